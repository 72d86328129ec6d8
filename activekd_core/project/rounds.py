"""Training rounds: the next round's settings, training one round, its stored outputs, recovery.

Round ``k`` trains a fresh student on every training label present when it starts
(:meth:`~activekd_core.project.context.ProjectContext.training_labels`) and, when it
succeeds, becomes the active model. A round that fails, is cancelled or whose process is
killed never becomes active: its status says so, its files are removed (or were never
renamed into place), the labels and the previous model stay as they were.

Files: ``checkpoints/round_NNNN.safetensors`` and ``cache/student/round_NNNN_{probs,features}.npy``
(the student's outputs for the whole pool).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core.jobs import JobRunner, pid_alive
from activekd_core.progress import Cancelled, ProgressFn
from activekd_core.project.audit_set import audit_metrics
from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.project.teacher_probs import TeacherProbs, save_npy
from activekd_core.store import RoundRecord, Store

# A round refuses to train when more than this share of the pool cannot be decoded (or any
# labeled image cannot): a moved or emptied image folder must not train on blank pixels.
MAX_UNDECODABLE_SHARE = 0.02
UNDECODABLE_LISTED = 50  # images named in a round record or an error message

_LIVE_ROUNDS: set[tuple[str, int]] = set()  # (db path, round id) of retrain calls running in this process
_LIVE_LOCK = threading.Lock()


class Rounds:
    """The rounds of one project and the active student's stored outputs."""

    def __init__(self, ctx: ProjectContext, teacher: TeacherProbs) -> None:
        self.ctx = ctx
        self.teacher = teacher
        self._valid_outputs: dict[int, tuple[Any, ...]] = {}  # round id -> file identity of checked outputs

    def active(self) -> RoundRecord | None:
        """The newest successful round (its student is the active model)."""
        return self.ctx.store.latest_done_round()

    def new_labels_since_model(self) -> int:
        """Training labels added since the active student was trained (all of them before any round)."""
        n_labels = int(self.ctx.training_label_counts().sum())  # kept counts: no pass over every label
        active = self.active()
        return n_labels - (active.n_labeled if active is not None else 0)

    def undecodable_images(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of the images the active round left out because they could not be
        decoded (at most :data:`UNDECODABLE_LISTED`; see :meth:`retrain`); never queried."""
        rec = self.active()
        listed = ((rec.metrics or {}).get("undecodable") or {}).get("images") if rec is not None else None
        return [(str(d.get("id")), str(d.get("reason"))) for d in listed or [] if isinstance(d, dict)]

    # ---- the students' stored outputs ----------------------------------------------------

    def student_outputs(self, round_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored ``(probs, features)`` of a round's student for the whole pool (read-only memory maps).

        The files are validated the first time each version of them is read: probabilities
        ``(N, C)`` and features ``(N, D)`` of a floating dtype, all finite, rows of ``probs``
        summing to 1. Missing, unreadable or invalid files (a damaged or hand-edited cache)
        are recomputed from the round's checkpoint and rewritten atomically.

        Raises:
            ProjectError: If they are invalid and cannot be recomputed (e.g. the checkpoint
                is gone or damaged); the message says why.
        """
        base = self.ctx.path("cache", "student", f"round_{round_id:04d}")
        paths = (Path(f"{base}_probs.npy"), Path(f"{base}_features.npy"))
        try:
            identity = tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in (p.stat() for p in paths))
            probs, feats = (np.load(p, mmap_mode="r") for p in paths)
            if self._valid_outputs.get(round_id) == identity:
                return probs, feats
            problem = _student_output_problem(probs, feats, len(self.ctx.pool()), len(self.ctx.classes))
        except FileNotFoundError as exc:
            problem = f"missing ({Path(exc.filename or '').name})"
        except (OSError, ValueError, EOFError) as exc:
            problem = f"unreadable ({exc})"
        if problem is None:
            self._valid_outputs[round_id] = identity
            return probs, feats
        with self.ctx.lock:
            return self._recompute_student_outputs(round_id, paths, problem)

    def _recompute_student_outputs(self, round_id: int, paths: tuple[Path, Path], problem: str
                                   ) -> tuple[np.ndarray, np.ndarray]:
        from activekd_core.pixel_cache import decode_pool_with_report
        from activekd_core.student import CheckpointError
        from activekd_core.training import predict_student

        try:
            model, header = self.load_student(round_id)
        except (ProjectError, CheckpointError) as exc:
            raise ProjectError(f"round {round_id}: the stored predictions are {problem} and cannot be recomputed: "
                               f"{exc}. Retrain to make a new round.") from exc
        size = int(header.get("image_size") or self.train_config().image_size)
        decoded = decode_pool_with_report(self.ctx.pool(), size, cache_dir=self.ctx.path("cache", "pixels"))
        probs, feats = predict_student(model, decoded.pixels)
        for path, arr in zip(paths, (probs, feats)):
            save_npy(path, arr)
        self._valid_outputs.pop(round_id, None)
        return np.load(paths[0], mmap_mode="r"), np.load(paths[1], mmap_mode="r")

    def active_student_probs(self) -> np.ndarray | None:
        """The active student's probabilities for the pool (a read-only memory map), or None."""
        rec = self.active()
        if rec is None:
            return None
        try:
            probs, _ = self.student_outputs(rec.id)
        except ProjectError:
            return None
        return probs if probs.shape == (len(self.ctx.pool()), len(self.ctx.classes)) else None

    def checkpoint_path(self, round_id: int | None = None) -> Path | None:
        """Absolute checkpoint of a round (default: the active one), or None."""
        rec = self.active() if round_id is None else self.ctx.store.round(round_id)
        if rec is None or not rec.checkpoint or rec.status != "done":
            return None
        return self.ctx.path(rec.checkpoint)

    def load_student(self, round_id: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Load the active (or a given round's) student, checking architecture and class count.

        Raises:
            ProjectError: If there is no finished round.
            activekd_core.student.CheckpointError: If the file is missing, corrupt, or from
                another architecture or class count (the message names the file).
        """
        from activekd_core.student import load_student

        ckpt = self.checkpoint_path(round_id)
        if ckpt is None:
            raise ProjectError("no trained student yet: retrain first" if round_id is None
                               else f"round {round_id} has no finished checkpoint")
        arch = (self.ctx.config.get("train") or {}).get("arch", self.ctx.config["student_arch"])
        return load_student(ckpt, arch=arch, num_classes=len(self.ctx.classes))

    # ---- the next round ------------------------------------------------------------------

    def train_config(self) -> Any:
        """The :class:`activekd_core.training.TrainConfig` of the next round."""
        from activekd_core.training import TrainConfig

        overrides = dict(self.ctx.config.get("train") or {})
        overrides.setdefault("arch", self.ctx.config["student_arch"])
        overrides.setdefault("seed", self.ctx.seed)
        if "weights" in overrides and overrides["weights"]:
            overrides["weights"] = Path(overrides["weights"])
        return TrainConfig(**overrides)

    def round_estimate(self, measure: bool = False) -> Any:
        """Steps and expected duration of the next round (:mod:`activekd_core.round_estimate`).

        The seconds per step come from earlier rounds with the same backbone, input size,
        device and loss; with ``measure=True`` and no stored rate, a few steps on
        synthetic data are timed now (seconds to a minute) and the rate is stored.
        """
        from activekd_core.devices import pick_device
        from activekd_core.round_estimate import estimate_round, record_rate

        store = self.ctx.store
        config = self.train_config()
        labeled, _ = self.ctx.training_labels()
        device = pick_device(config.device).type
        rates = store.get_setting("step_rates") or {}
        est = estimate_round(config, int(labeled.size), len(self.ctx.pool()), device, rates)
        if est.seconds_per_step is None and measure:
            from activekd_core.training import measure_step_seconds

            sps = measure_step_seconds(config, len(self.ctx.classes))
            rates = record_rate(rates, est.key, sps * 100, 100, "measured")
            store.set_setting("step_rates", rates)
            est = estimate_round(config, int(labeled.size), len(self.ctx.pool()), device, rates)
        return est

    def _record_step_rate(self, config: Any, metrics: dict[str, Any]) -> None:
        """Store a finished round's seconds per step for the next round's estimate."""
        from activekd_core.round_estimate import rate_key, record_rate

        try:
            device = str(metrics.get("device", "cpu")).split(":")[0]
            rates = record_rate(self.ctx.store.get_setting("step_rates") or {}, rate_key(config, device),
                                float(metrics["seconds"]), int(metrics["steps"]), "previous rounds")
            self.ctx.store.set_setting("step_rates", rates)
        except (KeyError, TypeError, ValueError):
            pass  # an estimate is a convenience: never fail a finished round over it

    def retrain(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> int:
        """Train one round on all training labels; on success it becomes the active model.

        Steps: teacher probabilities (cached), decoded pixels (cached), a check that the
        images decoded, ``train_round``, checkpoint written atomically, predictions for the
        whole pool stored, audit scores, round marked done. On any failure or cancel, the
        round is marked failed/cancelled with the error, its files are removed, and the
        exception is re-raised; labels and the previous model are untouched.

        Images that cannot be decoded (deleted, moved, corrupt, swapped for a link out of
        the image root) are never trained on as blank pixels: when only a few unlabeled
        ones fail (at most :data:`MAX_UNDECODABLE_SHARE` of the pool) they are left out of
        training and selection and listed in the round's ``metrics["undecodable"]``; when
        any labeled image or more than that share fails, the round fails naming the files.

        Returns:
            The id of the finished round.

        Raises:
            ProjectError: If nothing is labeled yet, or the images cannot be decoded (the
                round is recorded as failed; the previous model stays active).
        """
        from activekd_core.pixel_cache import decode_pool_with_report
        from activekd_core.student import save_student
        from activekd_core.training import predict_student, train_round

        ctx, store = self.ctx, self.ctx.store
        labeled, y = ctx.training_labels()
        if labeled.size == 0:
            raise ProjectError("label at least one image (outside the audit set) before training")
        config = self.train_config()
        active = self.active()
        prev = active.id if active else 0
        picks = [[it.image_id, it.score, b.id] for b in store.batches(round=prev) for it in b.items]
        space = "student" if active else "teacher"
        tprobs = self.teacher.probs(_phase(progress, "teacher"), cancel) if config.kd else None
        teacher_info = self.teacher.describe() or {"kind": ctx.config["teacher_spec"].get("kind")}
        round_id = store.start_round(ctx.strategy, space, picks=picks, teacher=teacher_info,
                                     n_labeled=int(labeled.size), owner=_this_process())
        live_key = (str(store.path), round_id)
        with _LIVE_LOCK:
            _LIVE_ROUNDS.add(live_key)
        ckpt_rel = f"checkpoints/round_{round_id:04d}.safetensors"
        out_base = ctx.path("cache", "student", f"round_{round_id:04d}")
        written: list[Path] = []
        try:
            decoded = decode_pool_with_report(ctx.pool(), config.image_size, cache_dir=ctx.path("cache", "pixels"),
                                              progress=_phase(progress, "decode"), cancel=cancel)
            pixels = decoded.pixels
            failed = _check_decoded(decoded.failures, labeled, len(ctx.pool()))
            result = train_round(pixels, labeled, y, tprobs, config, progress=_phase(progress, "train"), cancel=cancel,
                                 exclude=np.asarray(sorted(failed), dtype=np.int64))
            if cancel is not None and cancel.is_set():
                raise InterruptedError("training cancelled")
            metrics = dict(result.metrics)
            metrics["device"] = result.device
            metrics["undecodable"] = {"count": len(failed), "images": [
                {"id": ctx.pool().ids[r], "reason": failed[r]} for r in sorted(failed)[:UNDECODABLE_LISTED]]}
            ckpt = ctx.path(ckpt_rel)
            written.append(ckpt)
            save_student(result.model, ckpt, extra={"round": round_id, "classes": ctx.classes})
            probs, feats = predict_student(result.model, pixels)
            for suffix, arr in (("probs", probs), ("features", feats)):
                target = Path(f"{out_base}_{suffix}.npy")
                written.append(target)
                save_npy(target, arr)
            metrics["audit"] = audit_metrics(ctx, round_id, probs, tprobs)
            metrics["labels_per_class"] = np.bincount(y, minlength=len(ctx.classes)).tolist()
            if tprobs is not None and self.teacher.last_file is not None:
                metrics["teacher_probs_file"] = self.teacher.last_file.relative_to(ctx.folder).as_posix()
            metrics = json.loads(json.dumps(metrics, default=str))
            store.finish_round(round_id, "done", metrics=metrics, checkpoint=ckpt_rel)
            self._record_step_rate(config, metrics)
        except BaseException as exc:
            cancelled = (cancel is not None and cancel.is_set()) or isinstance(exc, (Cancelled, InterruptedError))
            for f in written:
                f.unlink(missing_ok=True)
            try:
                store.finish_round(round_id, "cancelled" if cancelled else "failed", error=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - e.g. a full disk; recover() marks the round interrupted
                pass
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE_ROUNDS.discard(live_key)
        return round_id

    def recover(self) -> int:
        """Clean up after a training process that died: returns the rounds marked interrupted.

        A round left 'running' is marked interrupted when the process that started it is
        gone (killed, out of memory, or a failure that could not even record itself, e.g. a
        full disk), or, for a round of this process, when its ``retrain`` call has ended;
        rounds from before owners were recorded are marked when no training job is alive.
        When no round and no training job is live any more, temporary files of unfinished
        atomic writes (``*.tmp`` in ``checkpoints/`` and ``cache/student/``) are removed.
        Finished files are never touched.
        """
        store = self.ctx.store
        job_alive = JobRunner(store).running("train") is not None
        n = store.mark_stale_rounds(alive=lambda rec: _round_alive(store, rec, job_alive))
        if job_alive or any(r.status == "running" for r in store.rounds()):
            return n
        for sub in (("checkpoints",), ("cache", "student")):
            folder = self.ctx.path(*sub)
            if folder.is_dir():
                for tmp in folder.glob("*.tmp"):
                    tmp.unlink(missing_ok=True)
        return n


def round_summary(rec: RoundRecord) -> dict[str, Any]:
    """A round as the JSON result of a training job."""
    return {"round": rec.id, "status": rec.status, "checkpoint": rec.checkpoint, "n_labeled": rec.n_labeled,
            "metrics": rec.metrics}


def _phase(progress: ProgressFn | None, phase: str) -> ProgressFn | None:
    if progress is None:
        return None

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"{phase}: {message}" if message else phase)

    return report


def _student_output_problem(probs: np.ndarray, feats: np.ndarray, n: int, n_classes: int) -> str | None:
    """Why stored student outputs cannot be used (wrong shape, dtype, non-finite values), or None."""
    if probs.ndim != 2 or probs.shape != (n, n_classes):
        return f"of the wrong shape (probabilities {probs.shape}, expected {(n, n_classes)})"
    if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] < 1:
        return f"of the wrong shape (features {feats.shape}, expected ({n}, D))"
    if probs.dtype.kind != "f" or feats.dtype.kind != "f":
        return f"of the wrong type (probabilities {probs.dtype}, features {feats.dtype})"
    for start in range(0, n, 65536):  # in blocks: a memory map is never copied whole
        p = np.asarray(probs[start:start + 65536], dtype=np.float64)
        if not np.isfinite(p).all() or (p < -1e-6).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
            return "not probabilities (non-finite, negative, or rows not summing to 1)"
    # Features (N x 512 for a ResNet) are checked on their first and last rows only: reading
    # every round's whole file on an Explore visit would cost more than it protects.
    ends = np.concatenate([np.asarray(feats[:256]), np.asarray(feats[-256:])]) if n else np.zeros((0, 1))
    if not np.isfinite(ends).all():
        return "not finite (features)"
    return None


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``; tells a reused pid apart), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b") ", 1)[-1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    """Who runs a round: host, pid and the pid's start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _round_alive(store: Store, rec: RoundRecord, job_alive: bool) -> bool:
    """Whether the process running a 'running' round is still at it (see :meth:`Rounds.recover`)."""
    owner = (rec.metrics or {}).get("owner")
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return job_alive  # recorded before owners were: the old rule
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process (torchrun on a shared folder): cannot tell, leave it
    pid = int(owner["pid"])
    if pid == os.getpid() and owner.get("start") == _process_start(pid):
        with _LIVE_LOCK:
            return (str(store.path), rec.id) in _LIVE_ROUNDS
    return pid_alive(pid) and (owner.get("start") is None or owner.get("start") == _process_start(pid))


def _check_decoded(failures: dict[int, str], labeled: np.ndarray, n_pool: int) -> dict[int, str]:
    """The pool rows that failed to decode, when a round may train without them.

    Raises:
        ProjectError: If a labeled image failed, or more than :data:`MAX_UNDECODABLE_SHARE`
            of the pool did; the message names the files (and how many more).
    """
    if not failures:
        return {}
    bad_labeled = [int(r) for r in labeled if int(r) in failures]
    if bad_labeled:
        raise ProjectError(
            f"cannot train: {len(bad_labeled)} labeled image(s) could not be decoded and would be trained as blank "
            f"images: {_name_failures(failures, bad_labeled)}. Restore the files (or undo their labels) and retrain; "
            "the previous model stays active.")
    if len(failures) > MAX_UNDECODABLE_SHARE * n_pool:
        raise ProjectError(
            f"cannot train: {len(failures)} of {n_pool} images ({100 * len(failures) / max(1, n_pool):.1f}%) could not "
            f"be decoded, more than the {100 * MAX_UNDECODABLE_SHARE:g}% allowed: {_name_failures(failures, sorted(failures))}. "
            "Was the image folder moved or emptied? The previous model stays active.")
    return dict(failures)


def _name_failures(failures: dict[int, str], rows: list[int], limit: int = 10) -> str:
    """``"<id>: <reason>; ..."`` for the first ``limit`` rows, and how many more."""
    shown = "; ".join(failures[r] for r in rows[:limit])
    return shown + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")
