"""The CLIP zero-shot teacher: cached image features scored against class text prototypes.

Logits are ``logit_scale * cos(image, class prototype)`` with ``logit_scale = 100`` by
default (the CLIP papers' and PCoreSet's value; a trained CLIP's learned scale is
``exp(4.6052) = 100`` as well). Pass ``logit_scale=None`` to use the loaded model's own
``logit_scale.exp()`` instead (e.g. about 14.3 for a randomly initialised model).

The teacher composes the modules beside it: where the weights come from
(:mod:`.weights`), loading the model (:mod:`.clip_model`), encoding the pool once into
the resumable feature cache, sharded under ``torchrun`` (:mod:`.features`), and the
prompts (:mod:`.prompts`). Changing prompts reruns the text tower only, for the classes
whose texts changed; :func:`probs_from_features` turns cached features and prototypes
into probabilities.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import open_clip
import torch
import torch.nn.functional as F

from activekd_core.atomic import atomic_path
from activekd_core.devices import pick_device
from activekd_core.distributed import DistInfo
from activekd_core.images import ImagePool
from activekd_core.teachers.base import ProgressFn, TeacherUnavailable
from activekd_core.teachers.clip_model import load_clip
from activekd_core.teachers.feature_cache import FeatureCache, PartialFeatures, cache_key, default_cache_root
from activekd_core.teachers.features import extract_features, extract_features_sharded
from activekd_core.teachers.prompts import ClassPrompts, build_class_texts, prompts_key, resolve_templates
from activekd_core.teachers.weights import is_random_weights, resolve_weights

# --------------------------------------------------------------------------- re-prompting


def probs_from_features(
    features: npt.ArrayLike,
    prototypes: npt.ArrayLike,
    scale: float = 100.0,
    *,
    chunk_rows: int | None = None,
    out: np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Softmax of ``scale * features @ prototypes.T``, computed in float32 row chunks.

    Works on memmaps (float16 or float32) without loading them whole; the output can be a
    memmap too. Both inputs are expected to be L2-normalised (rows), so the logits are
    scaled cosines.

    Args:
        features: ``(N, D)`` image features.
        prototypes: ``(C, D)`` class prototypes.
        scale: Logit scale (100 for CLIP).
        chunk_rows: Rows per chunk (default: about 8 MB of logits per chunk).
        out: Optional float32 ``(N, C)`` destination.
        device: Run GEMM and softmax with torch on this device (e.g. ``"cuda"``); None
            (default) uses the CPU path: torch GEMM (MKL, all cores) + NumPy softmax.

    Returns:
        float32 ``(N, C)`` probabilities (``out`` when given).
    """
    n = len(features)  # type: ignore[arg-type]
    w = torch.from_numpy(np.ascontiguousarray(np.asarray(prototypes, dtype=np.float32)).T.copy())
    c = w.shape[1]
    if features.shape[1] != w.shape[0]:  # type: ignore[union-attr]
        raise ValueError(f"features have dim {features.shape[1]} but prototypes have dim {w.shape[0]}")  # type: ignore[union-attr]
    if out is None:
        out = np.empty((n, c), dtype=np.float32)
    elif out.shape != (n, c) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n, c)}, got {out.dtype} {out.shape}")
    w.mul_(float(scale))
    if chunk_rows is None:
        chunk_rows = max(64, (1 << 21) // max(c, 1))  # ~8 MB of logits per chunk
    scratch = np.empty((min(chunk_rows, max(n, 1)), c), dtype=np.float32)
    in_place = out.flags.c_contiguous and out.flags.writeable
    if device is not None:
        dev = torch.device(device)
        wd = w.to(dev)
        with torch.inference_mode():
            for start in range(0, n, chunk_rows):
                stop = min(n, start + chunk_rows)
                block = np.ascontiguousarray(features[start:stop], dtype=np.float32)  # type: ignore[index]
                f = torch.from_numpy(block).to(dev, non_blocking=True)
                out[start:stop] = torch.softmax(f @ wd, dim=1).cpu().numpy()
        return out
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for start in range(0, n, chunk_rows):
            stop = min(n, start + chunk_rows)
            block = features[start:stop]  # type: ignore[index]
            if block.dtype != np.float32 or not block.flags.c_contiguous:
                block = np.ascontiguousarray(block, dtype=np.float32)
            logits = out[start:stop] if in_place else scratch[: stop - start]
            torch.mm(torch.from_numpy(block), w, out=torch.from_numpy(logits))  # read-only input is never written
            _softmax_into(logits, logits)
            if not in_place:
                out[start:stop] = logits
    return out


def _softmax_into(logits: np.ndarray, dest: np.ndarray) -> None:
    """Row softmax of ``logits`` written into ``dest`` (may be the same array).

    NumPy's single-threaded vectorised ``exp`` is used on purpose: torch's OpenMP
    element-wise kernels lose badly on a loaded 2-core machine (thread barriers), while
    the GEMM before it keeps using all cores through MKL.
    """
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=dest)
    np.exp(dest, out=dest)
    dest *= np.reciprocal(dest.sum(axis=1, keepdims=True))


# --------------------------------------------------------------------------- teacher


class ClipZeroShotTeacher:
    """CLIP zero-shot classifier over a pool, with cached image features.

    Args:
        classes: Class names (column order).
        model_name: open_clip model name, ``hf-hub:org/repo`` or ``local-dir:/folder``.
        pretrained: Tag, local checkpoint file, or None for seeded random weights.
        class_prompts: Extra prompts per class name (string or list; ``{}`` = class name).
        templates: Template set name (``single``, ``simple``, ``openai``) or a list of templates.
        logit_scale: Multiplier of the cosine similarities; None uses the model's own.
        cache_dir: Root of the feature cache (default :func:`default_cache_root`).
        device: ``auto`` (cuda, mps, cpu) or a torch device string (see
            :func:`activekd_core.devices.pick_device`).
        batch_size: Images per encode batch.
        num_workers: DataLoader workers (None: automatic).
        feature_dtype: ``float32`` or ``float16`` storage for cached features.
        seed: Seed for random weights (``pretrained=None``).
        hf_cache_dir: Hugging Face cache folder (default: the hub's default).

    Attributes:
        images_encoded: Images passed through ``encode_image`` by this object (tests use it
            to check cache reuse).
        text_passes: Text-tower passes run (only when some class has new texts).
        texts_encoded: Prompt texts passed through ``encode_text``.
    """

    kind = "clip_zero_shot"

    def __init__(
        self,
        classes: Sequence[str],
        *,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        class_prompts: ClassPrompts | None = None,
        templates: str | Sequence[str] | None = None,
        logit_scale: float | None = 100.0,
        cache_dir: Path | str | None = None,
        device: str = "auto",
        batch_size: int = 64,
        num_workers: int | None = None,
        feature_dtype: str = "float32",
        seed: int = 0,
        hf_cache_dir: str | None = None,
    ) -> None:
        if len(classes) < 2:
            raise ValueError(f"a teacher needs at least 2 classes, got {list(classes)}")
        if feature_dtype not in ("float32", "float16"):
            raise ValueError(f"feature_dtype must be 'float32' or 'float16', got {feature_dtype!r}")
        self.classes = [str(c) for c in classes]
        self.model_name = model_name
        self.pretrained = pretrained
        self.logit_scale_arg = logit_scale
        self.cache_root = Path(cache_dir) if cache_dir is not None else default_cache_root()
        self.device_arg = device
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.feature_dtype = feature_dtype
        self.seed = int(seed)
        self.hf_cache_dir = hf_cache_dir
        self.images_encoded = 0
        self.text_passes = 0
        self.texts_encoded = 0
        self._model: torch.nn.Module | None = None
        self._load_lock = threading.Lock()
        self.weights_info: dict[str, Any] | None = None
        self._text_cache: dict[str, np.ndarray] = {}
        self._raw_text_cache: dict[tuple[tuple[str, ...], ...], np.ndarray] = {}
        self._last_features: dict[str, Any] | None = None
        self.set_prompts(class_prompts, templates)

    # ---- configuration

    def set_prompts(self, class_prompts: ClassPrompts | None = None, templates: str | Sequence[str] | None = None) -> None:
        """Change prompts; the next prediction reuses the cached image features and reruns the text tower only."""
        self.class_texts = build_class_texts(self.classes, class_prompts, templates)
        self.class_prompts = {k: (list(v) if not isinstance(v, str) else v) for k, v in dict(class_prompts or {}).items()}
        self.templates = templates if isinstance(templates, str) or templates is None else list(templates)
        resolve_templates(templates)

    def load(self) -> None:
        """Load the model now (otherwise done on first use).

        Raises:
            TeacherUnavailable: Weights missing offline, unknown model/tag, bad checkpoint,
                or an accelerator asked for that this machine does not have.
        """
        with self._load_lock:
            if self._model is not None:
                return
            try:
                device = pick_device(str(self.device_arg))
            except ValueError as exc:
                raise TeacherUnavailable(f"CLIP teacher device: {exc}") from exc
            model, preprocess, tokenizer, info = load_clip(
                self.model_name, self.pretrained, device=device, seed=self.seed, hf_cache_dir=self.hf_cache_dir
            )
            cfg = open_clip.get_model_preprocess_cfg(model)
            size = cfg.get("size", 224)
            self.device, self._preprocess, self._tokenizer, self.weights_info = device, preprocess, tokenizer, info
            self.image_size = int(size if isinstance(size, int) else size[0])
            self.preprocess_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
            with torch.inference_mode():
                self.embed_dim = int(model.encode_text(tokenizer(["a"]).to(device)).shape[-1])
            self.model_logit_scale = float(model.logit_scale.exp().item())
            self._model = model  # last: other threads see a fully loaded teacher

    @property
    def scale(self) -> float:
        """The logit scale in use."""
        if self.logit_scale_arg is not None:
            return float(self.logit_scale_arg)
        self.load()
        return self.model_logit_scale

    # ---- features

    def feature_cache(self, pool: ImagePool) -> FeatureCache:
        """The cache entry for this model, weights, preprocessing and pool content."""
        self.load()
        fields = {
            "what": "clip-image-features-l2norm",
            "model": self.model_name,
            "weights": self._weights_key(),
            "preprocess": self.preprocess_cfg,
            "pool": pool.fingerprint(),
            "n": len(pool),
            "dtype": self.feature_dtype,
        }
        return FeatureCache(self.cache_root, fields)

    def _weights_key(self) -> dict[str, Any]:
        ident = dict(self.weights_info["identity"])
        ident.pop("path", None)  # a moved/copied file keeps its cache
        ident.pop("mtime_ns", None)
        if ident.get("type") == "random":
            ident["seed"] = self.seed
        return ident

    def image_features(
        self, pool: ImagePool, progress: ProgressFn | None = None, cancel: threading.Event | None = None
    ) -> np.memmap:
        """L2-normalised image features ``(N, D)`` (memmap), computed once per pool and cached on disk."""
        cache = self.feature_cache(pool)
        if not cache.complete:
            def count(k: int) -> None:
                self.images_encoded += k

            extract_features(
                self._model,  # type: ignore[arg-type]
                self._preprocess,
                pool,
                cache,
                image_size=self.image_size,
                dim=self.embed_dim,
                dtype=self.feature_dtype,
                device=self.device,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                progress=progress,
                cancel=cancel,
                on_batch=count,
            )
        meta = cache.meta()
        self._last_features = {"cache_key": cache.key, "cache_dir": str(cache.dir), "n": meta["n_rows"], "failed": meta["failed"]}
        return cache.load()

    def image_features_distributed(
        self, pool: ImagePool, info: DistInfo, progress: ProgressFn | None = None, cancel: threading.Event | None = None
    ) -> tuple[np.memmap | None, dict[str, Any]]:
        """:meth:`image_features` shared across the ranks of a process group; call on every rank.

        See :func:`extract_features_sharded`. Returns the features on rank 0 (None on the
        others) and this rank's report; without a process group it is :meth:`image_features`.
        """
        if not info.enabled:
            before = self.images_encoded
            feats = self.image_features(pool, progress=progress, cancel=cancel)
            return feats, {"rank": 0, "world_size": 1, "rows": [0, len(pool)], "encoded": self.images_encoded - before,
                           "resumed_from": 0, "cached": self.images_encoded == before}
        cache = self.feature_cache(pool)

        def count(k: int) -> None:
            self.images_encoded += k

        feats, report = extract_features_sharded(
            self._model,  # type: ignore[arg-type]
            self._preprocess,
            pool,
            cache,
            info,
            image_size=self.image_size,
            dim=self.embed_dim,
            dtype=self.feature_dtype,
            device=self.device,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            progress=progress,
            cancel=cancel,
            on_batch=count,
        )
        if feats is not None:
            meta = cache.meta()
            self._last_features = {"cache_key": cache.key, "cache_dir": str(cache.dir), "n": meta["n_rows"], "failed": meta["failed"]}
        return feats, report

    # ---- text

    def text_prototypes(self, progress: ProgressFn | None = None) -> np.ndarray:
        """Class prototypes ``(C, D)`` float32: per class, the renormalised mean of its normalised text embeddings.

        Cached per class (by model, weights and that class's texts) in memory and under
        ``<cache_dir>/text/``, so editing one class's prompt re-encodes that class only.
        """
        self.load()
        folder = self.cache_root / "text" / cache_key({"model": self.model_name, "weights": self._weights_key()})
        protos = np.empty((len(self.classes), self.embed_dim), dtype=np.float32)
        todo: list[int] = []
        keys = [prompts_key([texts]) for texts in self.class_texts]
        for c, key in enumerate(keys):
            if key not in self._text_cache and (folder / f"{key}.npy").is_file():
                with contextlib.suppress(OSError, ValueError):
                    self._text_cache[key] = np.load(folder / f"{key}.npy")
            if key in self._text_cache and self._text_cache[key].shape == (self.embed_dim,):
                protos[c] = self._text_cache[key]
            else:
                todo.append(c)
        if todo:
            new = self._encode_class_texts([self.class_texts[c] for c in todo], progress)
            for c, row in zip(todo, new):
                protos[c] = self._text_cache[keys[c]] = row
                with atomic_path(folder / f"{keys[c]}.npy", suffix=".npy") as tmp:
                    np.save(tmp, row)
        return protos

    def raw_text_prototypes(self, progress: ProgressFn | None = None) -> np.ndarray:
        """Per class, the mean of its RAW (unnormalised) text embeddings ``(C, D)`` float32.

        CLAP starts its prototypes here and pulls them back here (their norm sets the
        strength of that pull). Kept in memory per (class texts) after the first call.
        """
        self.load()
        key = tuple(tuple(t) for t in self.class_texts)
        if key not in self._raw_text_cache:
            self._raw_text_cache[key] = self._encode_class_texts(self.class_texts, progress, normalise=False)
        return np.array(self._raw_text_cache[key], dtype=np.float32)

    def _encode_class_texts(
        self, class_texts: list[list[str]], progress: ProgressFn | None = None, batch: int = 256,
        normalise: bool = True,
    ) -> np.ndarray:
        flat = [t for texts in class_texts for t in texts]
        owners = np.repeat(np.arange(len(class_texts)), [len(t) for t in class_texts])
        chunks = []
        with torch.inference_mode():
            for s in range(0, len(flat), batch):
                tokens = self._tokenizer(flat[s : s + batch]).to(self.device)
                emb = self._model.encode_text(tokens).float()  # type: ignore[union-attr]
                chunks.append((F.normalize(emb, dim=-1) if normalise else emb).cpu())
                if progress is not None:
                    done = min(len(flat), s + batch)
                    progress(done, len(flat), f"Encoding prompts with CLIP: {done:,}/{len(flat):,} texts")
        emb = torch.cat(chunks)
        protos = torch.zeros(len(class_texts), emb.shape[1])
        protos.index_add_(0, torch.from_numpy(owners), emb)
        protos /= torch.from_numpy(np.bincount(owners, minlength=len(class_texts))).float().unsqueeze(1)
        self.text_passes += 1
        self.texts_encoded += len(flat)
        if not normalise:
            return protos.numpy().astype(np.float32)
        return F.normalize(protos, dim=-1).numpy().astype(np.float32)

    # ---- teacher interface

    def predict_proba(
        self,
        pool: ImagePool,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Zero-shot probabilities float32 ``(N, C)``; image features come from the cache when present.

        Raises:
            TeacherUnavailable: The model cannot be loaded (message says how to fix).
            Cancelled: ``cancel`` was set; finished rows stay cached for the next call.
        """
        feats = self.image_features(pool, progress=progress, cancel=cancel)
        gpu = self.device if self.device.type == "cuda" else None
        return probs_from_features(feats, self.text_prototypes(progress), self.scale, out=out, device=gpu)

    def partial_proba(self, pool: ImagePool) -> tuple[PartialFeatures, np.ndarray] | None:
        """Zero-shot probabilities of the images encoded so far while an extraction runs.

        Reads the finished rows of the unfinished feature cache entry (no lock: another
        process may be writing the rest) and scores them like :meth:`predict_proba` does,
        so each row equals its row of the final probabilities.

        Returns:
            ``(partial features, float32 probabilities (len(rows), C))`` in the order of
            the partial features' pool rows, or None when the entry is complete or has
            nothing readable yet.
        """
        part = self.feature_cache(pool).partial()
        if part is None:
            return None
        return part, probs_from_features(part.features, self.text_prototypes(), self.scale)

    def display_name(self) -> str:
        """Short human-readable name (says so when the weights are random)."""
        if self.model_name.startswith("local-dir:"):
            return f"CLIP zero-shot (local folder {Path(self.model_name[len('local-dir:'):]).name})"
        if is_random_weights(self.pretrained):
            weights = "random weights, not a trained CLIP"
        elif os.sep in str(self.pretrained) or Path(str(self.pretrained)).suffix:
            weights = Path(str(self.pretrained)).name
        else:
            weights = str(self.pretrained)
        return f"CLIP zero-shot ({self.model_name}, {weights})"

    def spec(self) -> dict[str, Any]:
        """JSON spec that rebuilds this teacher through ``make_teacher``."""
        return {
            "kind": self.kind,
            "classes": self.classes,
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "class_prompts": self.class_prompts,
            "templates": self.templates,
            "logit_scale": self.logit_scale_arg,
            "feature_dtype": self.feature_dtype,
            "seed": self.seed,
        }

    def _weights(self) -> dict[str, Any]:
        """Where the weights come from (no model load, no download)."""
        if self.weights_info is None:
            self.weights_info = resolve_weights(self.model_name, self.pretrained, hf_cache_dir=self.hf_cache_dir)
        return self.weights_info

    def describe(self) -> dict[str, Any]:
        """Provenance: model, weights identity, every prompt text, scale, device, feature cache.

        Does not load the model (cheap and stable before first use); fields known only
        after loading (``preprocess``, the model's own logit scale, the device) are filled
        once it is loaded. Weights that cannot be had are reported (``available`` False
        and ``error``) rather than raised; ``predict_proba`` raises.
        """
        try:
            info: dict[str, Any] | None = self._weights()
            error = None
        except TeacherUnavailable as exc:
            info, error = None, str(exc)
        loaded = self._model is not None
        if self.logit_scale_arg is not None:
            scale: float | str = float(self.logit_scale_arg)
        else:
            scale = self.model_logit_scale if loaded else "model"
        return {
            "kind": self.kind,
            "display_name": self.display_name(),
            "spec": self.spec(),
            "model_name": self.model_name,
            "weights": {k: v for k, v in info.items() if k in ("type", "identity")} if info else None,
            "random_weights": bool(info and info["type"] == "random"),
            "available": info is not None,
            "error": error,
            "loaded": loaded,
            "open_clip_version": open_clip.__version__,
            "preprocess": self.preprocess_cfg if loaded else None,
            # Every text when they are few; otherwise spec (templates + class prompts) rebuilds them.
            "class_texts": self.class_texts if sum(map(len, self.class_texts)) <= 2000 else None,
            "n_texts": sum(map(len, self.class_texts)),
            "prompts_key": prompts_key(self.class_texts),
            "logit_scale": scale,
            "logit_scale_source": "fixed" if self.logit_scale_arg is not None else "model",
            "device": str(self.device) if loaded else self.device_arg,
            "feature_cache": self._last_features,
        }


__all__ = [
    "ClipZeroShotTeacher",
    "probs_from_features",
    "resolve_weights",  # where it was first defined; pages/project.py imports it from here
]
