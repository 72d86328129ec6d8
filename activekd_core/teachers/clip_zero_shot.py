"""CLIP zero-shot teacher through open_clip, with a resumable on-disk image-feature cache.

Logits are ``logit_scale * cos(image, class prototype)`` with ``logit_scale = 100`` by
default (the CLIP papers' and PCoreSet's value; a trained CLIP's learned scale is
``exp(4.6052) = 100`` as well). Pass ``logit_scale=None`` to use the loaded model's own
``logit_scale.exp()`` instead (e.g. about 14.3 for a randomly initialised model).

Weights can be given as

- ``model_name`` + a pretrained *tag* (``"ViT-B-32"``, ``"laion2b_s34b_b79k"``): taken from
  the Hugging Face cache when present, downloaded when online; offline and not cached
  it fails at once with :class:`TeacherUnavailable` (no ~46 s of retries);
- ``model_name`` + ``pretrained="/path/to/open_clip_pytorch_model.bin"`` (or
  ``.safetensors``/``.pt``): a local checkpoint file for that architecture;
- ``model_name="local-dir:/path/to/folder"``: a folder holding ``open_clip_config.json``
  and the weights (the layout of open_clip's Hugging Face repos);
- ``pretrained=None``: random weights, seeded (for tests and benchmarks only; never a
  useful teacher, and ``describe()`` says so).

Image features are L2-normalised ``encode_image`` outputs, computed once per (model,
weights, preprocessing, pool content) in batches through a DataLoader and appended to a
memmap as they go (see :mod:`.feature_cache`), so changing prompts costs a text pass only.
Under ``torchrun`` the pool is sharded by rank (:func:`extract_features_sharded`): each
rank encodes a contiguous run of whole batches into its own resumable shard, and rank 0
merges the shards into the same cache entry a single process would write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import open_clip
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from activekd_core import distributed
from activekd_core.distributed import DistInfo
from activekd_core.images import ImageLoadError, ImagePool, load_image
from activekd_core.teachers.base import Cancelled, ProgressFn, TeacherUnavailable, check_cancel
from activekd_core.teachers.feature_cache import FeatureCache, cache_key, default_cache_root
from activekd_core.teachers.prompts import ClassPrompts, build_class_texts, prompts_key, resolve_templates

CONFIG_DIR = Path(__file__).with_name("configs")
open_clip.add_model_config(CONFIG_DIR)  # registers "akd-tiny-clip" (tests and benches)

RANDOM_WEIGHTS = ("random", "none", "")


# --------------------------------------------------------------------------- device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda (``cuda:LOCAL_RANK`` under torchrun), then mps, then cpu.

    Anything else is passed to ``torch.device``.
    """
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        # Under torchrun each local rank takes its own GPU (cuda:LOCAL_RANK).
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------- weights


def _hub_online(timeout: float = 2.0) -> bool:
    """False when offline mode is set or the hub host cannot be reached within ``timeout`` s."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    result: list[bool] = []

    def probe() -> None:  # DNS lookups ignore socket timeouts, hence the thread
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def file_identity(path: Path | str) -> dict[str, Any]:
    """Identity of a weights file: size, mtime and a SHA-256 of its first and last MiB.

    The partial hash keeps multi-GB checkpoints cheap to identify while still telling
    different files of equal size apart.
    """
    path = Path(path).resolve()
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        if stat.st_size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_head_tail": digest.hexdigest()[:24]}


def _how_to_supply(model_name: str, pretrained: str | None, cfg: Mapping[str, Any] | None) -> str:
    where = ""
    if cfg:
        if cfg.get("hf_hub"):
            repo = cfg["hf_hub"].rstrip("/")
            where = f" (it is published at https://huggingface.co/{repo.rsplit('/', 1)[0] if repo.count('/') > 1 else repo})"
        elif cfg.get("url"):
            where = f" (it is published at {cfg['url']})"
    return (
        f"To use CLIP without internet, supply the weights locally: download the checkpoint for "
        f"model {model_name!r} tag {pretrained!r}{where} on a machine with internet, copy it here, then either "
        f"(a) keep model {model_name!r} and set pretrained to the file path, e.g. "
        f"pretrained='/models/open_clip_pytorch_model.bin' (.bin/.pt/.safetensors), or "
        f"(b) put open_clip_config.json and the weights in one folder and set model to 'local-dir:/models/folder', or "
        f"(c) copy a Hugging Face cache that holds it and point HF_HOME at it. "
        f"Without CLIP weights, use the offline stand-in teacher (kind 'standin') or precomputed probabilities."
    )


@contextlib.contextmanager
def _quiet_open_clip_logging() -> Any:
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def resolve_weights(
    model_name: str, pretrained: str | None, *, hf_cache_dir: str | None = None, online: bool | None = None
) -> dict[str, Any]:
    """Decide where the weights come from without downloading anything; fail fast when they cannot be had.

    Args:
        model_name: An open_clip model name, ``hf-hub:org/repo`` or ``local-dir:/folder``.
        pretrained: A tag, a checkpoint file path, or None/"random" for random weights.
        hf_cache_dir: Hugging Face cache folder (default: the hub's default).
        online: Override the network check (tests).

    Returns:
        A dict with ``type`` (``tag``/``file``/``local-dir``/``hf-hub``/``random``), the
        arguments for open_clip (``create_name``, ``create_pretrained``, ``force``), and an
        ``identity`` used in cache keys.

    Raises:
        TeacherUnavailable: Unknown model or tag, missing file, or weights that would
            need a download while offline. The message says how to supply a checkpoint.
    """
    from huggingface_hub import try_to_load_from_cache

    def cached(repo: str, filename: str) -> str | None:
        hit = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir)
        return hit if isinstance(hit, str) and os.path.isfile(hit) else None

    if model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:") :]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise TeacherUnavailable(
                f"local CLIP folder {folder} has no open_clip_config.json. " + _how_to_supply(model_name, pretrained, None)
            )
        ckpt = open_clip.factory._find_checkpoint_in_dir(folder)
        if ckpt is None:
            raise TeacherUnavailable(
                f"local CLIP folder {folder} holds no weights (*.safetensors, *.bin or *.pth); "
                "the model would be random. " + _how_to_supply(model_name, pretrained, None)
            )
        config_hash = hashlib.sha256((folder / "open_clip_config.json").read_bytes()).hexdigest()[:16]
        return {
            "type": "local-dir",
            "create_name": f"local-dir:{folder.resolve()}",
            "create_pretrained": None,
            "force": {},
            "identity": {"type": "local-dir", "config_sha256": config_hash, **file_identity(ckpt)},
        }
    if model_name.startswith("hf-hub:"):
        repo = model_name[len("hf-hub:") :]
        config = cached(repo, "open_clip_config.json")
        if config is not None and open_clip.factory._find_checkpoint_in_dir(Path(config).parent):
            # Cached snapshot: load it as a local folder, so nothing asks the network.
            snapshot = Path(config).parent
            return {
                "type": "hf-hub",
                "create_name": f"local-dir:{snapshot}",
                "create_pretrained": None,
                "force": {},
                "identity": {"type": "hf-hub", "repo": repo, "revision": snapshot.name},
            }
        if not (online if online is not None else _hub_online()):
            raise TeacherUnavailable(
                f"CLIP model {model_name!r} is not in the local Hugging Face cache and the hub cannot be reached "
                "(offline or HF_HUB_OFFLINE=1). " + _how_to_supply(model_name, pretrained, None)
            )
        return {
            "type": "hf-hub",
            "create_name": model_name,
            "create_pretrained": None,
            "force": {},
            "identity": {"type": "hf-hub", "repo": repo},
        }

    known = open_clip.list_models()
    if model_name.replace("/", "-") not in known:
        raise TeacherUnavailable(
            f"unknown open_clip model {model_name!r}; known names include {known[:8]} ... "
            "(see open_clip.list_models()), or use 'local-dir:/folder'."
        )
    if pretrained is None or str(pretrained).strip().lower() in RANDOM_WEIGHTS:
        return {
            "type": "random",
            "create_name": model_name,
            "create_pretrained": None,
            "force": {},
            "identity": {"type": "random"},
        }
    cfg = open_clip.get_pretrained_cfg(model_name.replace("/", "-"), pretrained)
    if not cfg:
        path = Path(pretrained).expanduser()
        if path.is_file():
            return {
                "type": "file",
                "create_name": model_name,
                "create_pretrained": str(path.resolve()),
                "force": {},
                "identity": {"type": "file", **file_identity(path)},
            }
        tags = open_clip.list_pretrained_tags_by_model(model_name.replace("/", "-"))
        looks_like_path = os.sep in str(pretrained) or Path(str(pretrained)).suffix in (".bin", ".pt", ".pth", ".safetensors")
        what = f"checkpoint file {path} does not exist" if looks_like_path else f"{pretrained!r} is not a known tag for {model_name!r} (tags: {tags})"
        raise TeacherUnavailable(f"CLIP weights not found: {what}. " + _how_to_supply(model_name, pretrained, None))

    # A known tag: look in the local caches first.
    force = {
        "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
        "force_preprocess_cfg": {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg},
    }
    local: str | None = None
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        local = cfg["file"]
    if local is None and cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        names = [filename]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        if filename == "open_clip_pytorch_model.bin":
            names.insert(0, "open_clip_model.safetensors")
        for name in names:
            local = cached(repo, name)
            if local:
                break
    if local is None and cfg.get("url"):
        candidate = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(cfg["url"]).path)
        if candidate.is_file():
            local = str(candidate)
    identity = {"type": "tag", "tag": pretrained}
    if local is not None:
        return {"type": "tag", "create_name": model_name, "create_pretrained": local, "force": force, "identity": identity}
    if not (online if online is not None else _hub_online()):
        raise TeacherUnavailable(
            f"CLIP weights for model {model_name!r} tag {pretrained!r} are not in the local cache and cannot be "
            "downloaded here (no internet, or HF_HUB_OFFLINE=1). " + _how_to_supply(model_name, pretrained, cfg)
        )
    return {"type": "tag", "create_name": model_name, "create_pretrained": pretrained, "force": {}, "identity": identity}


def load_clip(
    model_name: str,
    pretrained: str | None,
    *,
    device: torch.device,
    seed: int = 0,
    hf_cache_dir: str | None = None,
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], Callable[[list[str]], torch.Tensor], dict[str, Any]]:
    """Build an open_clip model, its eval transform and tokenizer.

    Returns:
        ``(model, preprocess, tokenizer, weights_info)``; ``weights_info`` is the
        :func:`resolve_weights` result.

    Raises:
        TeacherUnavailable: See :func:`resolve_weights`; also when the checkpoint does
            not fit the architecture (the message names the file).
    """
    info = resolve_weights(model_name, pretrained, hf_cache_dir=hf_cache_dir)
    try:
        with _quiet_open_clip_logging(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                info["create_name"], pretrained=info["create_pretrained"], device=device, cache_dir=hf_cache_dir, **info["force"]
            )
    except TeacherUnavailable:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/KeyError for bad files
        source = info["create_pretrained"] or info["create_name"]
        raise TeacherUnavailable(
            f"could not load CLIP model {model_name!r} with weights {source}: {type(exc).__name__}: {exc}. "
            "Check that the checkpoint belongs to this architecture. " + _how_to_supply(model_name, pretrained, None)
        ) from exc
    model.eval()
    model = inference_form(model)
    tokenizer = open_clip.get_tokenizer(info["create_name"])
    return model, preprocess, tokenizer, info


CPU_CLIP_MODELS: tuple[tuple[str, str], ...] = (
    ("ViT-B-32", "the default; 3.4-9.4 images per CPU-second in float32 on the shared 2-core EPYC (load-dependent)"),
    ("MobileCLIP2-S0", "1.07x ViT-B-32's images per CPU-second here (256 px, 11M image-tower parameters)"),
)
"""open_clip architectures to offer a CPU-only user, with what ``bench/teacher.py --models`` measured.

Other MobileCLIP configurations (S1, S2, B) were *slower* than ViT-B-32 in PyTorch on this
CPU (0.3-0.6x): they are built for mobile accelerators. Weights must be supplied locally
(no downloads here); see :func:`resolve_weights`.
"""


def inference_form(model: torch.nn.Module) -> torch.nn.Module:
    """Fold train-time branches into single convolutions (MobileCLIP's FastViT/MobileOne blocks).

    MobileCLIP towers are built in their multi-branch training form; ``timm``'s
    ``reparameterize_model`` turns them into the plain form they were designed to run in
    (same function up to float rounding: cosine 1.00000 on random weights). Measured on
    the 2-core CPU (``bench/teacher.py --models``): 1.9x images per CPU-second for
    MobileCLIP2-S0, 1.1-1.2x for MobileCLIP-S1/S2. Models without such blocks (ViT,
    ResNet) are returned unchanged.
    """
    if not any(hasattr(m, "reparameterize") for m in model.modules()):
        return model
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model, inplace=True)


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


# --------------------------------------------------------------------------- extraction


class _PoolImages(Dataset):
    """Pool rows ``[start, stop)`` as preprocessed tensors; unreadable images become zeros plus a reason."""

    def __init__(self, pool: ImagePool, transform: Callable[[Any], torch.Tensor], start: int, stop: int, size: int) -> None:
        self.root, self.ids, self.pool = pool.root, pool.ids, pool
        self.transform, self.start, self.stop, self.size = transform, start, stop, size

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, str]:
        row = self.start + k
        try:
            image_id = self.ids[row]
            img = load_image(self.root, image_id, draft_size=self.size, recipe=self.pool.recipe,
                             ref=self.pool.item_ref(image_id))
            return self.transform(img), row, ""
        except ImageLoadError as exc:
            return torch.zeros(3, self.size, self.size), row, exc.reason or "unreadable"
        except Exception as exc:  # a transform failure must not stop the batch either
            return torch.zeros(3, self.size, self.size), row, f"{type(exc).__name__}: {exc}"


def auto_workers(n_images: int, batch_size: int) -> int:
    """DataLoader workers: none for tiny jobs, else up to 8 leaving one core to the model."""
    if n_images < 2 * batch_size:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def encode_rows(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    start: int,
    stop: int,
    *,
    image_size: int,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray, list[list[Any]]]]:
    """Encode pool rows ``[start, stop)`` in order, one batch at a time.

    Images are decoded and preprocessed by DataLoader workers (pinned memory on CUDA);
    the model runs under bf16 autocast on CUDA. A sharded (multi-process) extraction can
    call this on its own slice of rows and gather the results into one cache.

    Yields:
        ``(first_row, features, failed)``: float32 L2-normalised ``(b, D)`` features of
        rows ``first_row:first_row+b``, and ``[row, id, reason]`` for unreadable images
        (their feature rows are zeros, so they get uniform probabilities).

    Raises:
        Cancelled: ``cancel`` was set (checked before each batch).
    """
    if start >= stop:
        return
    workers = auto_workers(stop - start, batch_size) if num_workers is None else num_workers
    loader = DataLoader(
        _PoolImages(pool, preprocess, start, stop, image_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    for images, rows, reasons in loader:
        check_cancel(cancel)
        if on_batch is not None:
            on_batch(len(images))
        with torch.inference_mode(), autocast:
            feats = model.encode_image(images.to(device, non_blocking=True))
        feats = F.normalize(feats.float(), dim=-1)
        bad = [i for i, r in enumerate(reasons) if r]
        if bad:
            feats[bad] = 0.0
        failed = [[int(rows[i]), pool.ids[int(rows[i])], reasons[i]] for i in bad]
        yield int(rows[0]), feats.cpu().numpy(), failed


def extract_features(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    cache: FeatureCache,
    *,
    image_size: int,
    dim: int,
    dtype: str = "float32",
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> np.memmap:
    """Encode every pool image once into ``cache`` (resuming a partial entry) and return the memmap.

    Rows are written in pool order after each batch; progress is saved after each write,
    so an exception, a cancel or a killed process loses at most the batch in flight.

    Args:
        model: open_clip model in eval mode on ``device``.
        preprocess: The model's eval transform (PIL -> tensor).
        pool: Images to encode.
        cache: The entry to fill.
        image_size: Side of the model input (for zero rows of unreadable images).
        dim: Embedding width.
        dtype: Storage dtype, ``float32`` or ``float16``.
        device: Where to run the model.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes (None: :func:`auto_workers`).
        progress: ``progress(done, total, message)``, message with images/s.
        cancel: Set to stop after the current batch (raises :class:`Cancelled`).
        on_batch: Called with the batch size before each ``encode_image`` (tests, benches).

    Returns:
        The finished read-only ``(N, dim)`` memmap.
    """
    with cache.lock():
        if cache.complete:
            return cache.load()
        n = len(pool)
        writer = cache.open_writer(n, dim, dtype)
        start = writer.done
        if progress is not None:
            progress(start, n, f"Encoding images with CLIP: {start:,}/{n:,} (resuming)" if start else "Encoding images with CLIP")
        np_dtype = np.float16 if dtype == "float16" else np.float32
        t0 = time.perf_counter()
        encoded = 0
        for first, feats, failed in encode_rows(
            model, preprocess, pool, start, n, image_size=image_size, device=device, batch_size=batch_size,
            num_workers=num_workers, cancel=cancel, on_batch=on_batch,
        ):
            writer.write(first, feats.astype(np_dtype, copy=False), failed)
            encoded += len(feats)
            if progress is not None:
                rate = encoded / max(time.perf_counter() - t0, 1e-9)
                progress(writer.done, n, f"Encoding images with CLIP: {writer.done:,}/{n:,} ({rate:,.1f} images/s)")
        return writer.finalize({"device": device.type, "batch_size": batch_size, "resumed_from": writer.resumed_from})


# --------------------------------------------------------------------------- sharded extraction


SHARDS_DIR = "shards"
MERGE_CHUNK_ROWS = 4096


def shard_rows(n_rows: int, batch_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """The contiguous pool rows ``[start, stop)`` that ``rank`` encodes in a sharded extraction.

    The pool is cut into whole batches of ``batch_size`` rows (the batches a single
    process would run), and the batches are split into ``world_size`` contiguous runs as
    evenly as possible (``numpy.array_split`` semantics on batches). Every batch therefore
    holds the same images as in a single-process run, so on the same device and thread
    count the merged features equal the single-process ones bit for bit. A rank can get
    an empty range when there are fewer batches than ranks.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n_batches = -(-int(n_rows) // int(batch_size))
    base, extra = divmod(n_batches, world_size)
    first = rank * base + min(rank, extra)
    last = first + base + (1 if rank < extra else 0)
    return min(n_rows, first * batch_size), min(n_rows, last * batch_size)


def shard_cache(cache: FeatureCache, start: int, stop: int) -> FeatureCache:
    """The resumable entry holding rows ``[start, stop)`` of ``cache`` (under ``<entry>/shards/``).

    Keyed by the parent's fields plus the row range, so a rerun with the same world size
    and batch size resumes it, and any other split starts fresh shards.
    """
    return FeatureCache(cache.dir / SHARDS_DIR, {**cache.fields, "rows": [int(start), int(stop)]})


def _encode_shard(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    shard: FeatureCache,
    start: int,
    stop: int,
    *,
    image_size: int,
    dim: int,
    dtype: str,
    device: torch.device,
    batch_size: int,
    num_workers: int | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    on_batch: Callable[[int], None] | None,
) -> dict[str, int]:
    """Fill (or resume) one rank's shard entry; returns rows encoded now and the resume point."""
    with shard.lock():
        if shard.complete:
            return {"encoded": 0, "resumed_from": stop - start}
        writer = shard.open_writer(stop - start, dim, dtype)
        np_dtype = np.float16 if dtype == "float16" else np.float32
        resumed, encoded, t0 = writer.done, 0, time.perf_counter()
        total = stop - start
        if progress is not None:
            progress(resumed, total, f"Encoding rows {start:,}:{stop:,} with CLIP" + (f" (resuming at row {start + resumed:,})" if resumed else ""))
        for first, feats, failed in encode_rows(
            model, preprocess, pool, start + writer.done, stop, image_size=image_size, device=device,
            batch_size=batch_size, num_workers=num_workers, cancel=cancel, on_batch=on_batch,
        ):
            writer.write(first - start, feats.astype(np_dtype, copy=False), failed)
            encoded += len(feats)
            if progress is not None:
                rate = encoded / max(time.perf_counter() - t0, 1e-9)
                progress(writer.done, total, f"Encoding rows {start:,}:{stop:,} with CLIP: {writer.done:,}/{total:,} ({rate:,.1f} images/s)")
        writer.finalize({"device": device.type, "batch_size": batch_size, "resumed_from": resumed, "rows": [start, stop]})
        return {"encoded": encoded, "resumed_from": resumed}


def merge_shards(cache: FeatureCache, n: int, dim: int, dtype: str, ranges: list[tuple[int, int]], extra: Mapping[str, Any]) -> np.memmap:
    """Copy finished shard entries, in row order, into ``cache`` and finalise it (rank 0).

    Resumable: the entry's own progress record says how far an interrupted merge got, and
    shards already copied are skipped. The shards are deleted after ``meta.json`` is written.

    Args:
        cache: The ordinary (single-process) entry to fill.
        n: Pool rows.
        dim: Feature width.
        dtype: Storage dtype of the shards and the entry.
        ranges: ``[start, stop)`` of every shard, in row order (see :func:`shard_rows`).
        extra: Extra ``meta.json`` fields.

    Raises:
        RuntimeError: A needed shard is missing or unfinished (the message names its
            folder; ranks on several nodes need a shared filesystem), or has the wrong shape.
    """
    import shutil

    with cache.lock():
        if cache.complete:
            return cache.load()
        writer = cache.open_writer(n, dim, dtype)
        for start, stop in ranges:
            if stop <= writer.done or start == stop:
                continue  # already merged (a merge that was interrupted resumes here)
            shard = shard_cache(cache, start, stop)
            if not shard.complete:
                raise RuntimeError(
                    f"feature shard for rows {start}:{stop} is not complete at {shard.dir}: every rank must write "
                    "into the same project folder (for several nodes, put it on a shared filesystem)"
                )
            rows = shard.load()
            if rows.shape != (stop - start, dim):
                raise RuntimeError(f"feature shard {shard.dir} has shape {rows.shape}, expected {(stop - start, dim)}")
            failed = shard.meta().get("failed", [])
            while writer.done < stop:
                a = writer.done
                b = min(stop, a + MERGE_CHUNK_ROWS)
                writer.write(a, np.asarray(rows[a - start : b - start]), [f for f in failed if a <= f[0] < b])
            del rows
        out = writer.finalize({**dict(extra), "resumed_from": writer.resumed_from})
    shutil.rmtree(cache.dir / SHARDS_DIR, ignore_errors=True)
    return out


def extract_features_sharded(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    cache: FeatureCache,
    info: DistInfo,
    *,
    image_size: int,
    dim: int,
    dtype: str = "float32",
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.memmap | None, dict[str, Any]]:
    """Encode the pool across the ranks of a process group into one ordinary cache entry.

    Call it on every rank (it uses collectives of :mod:`activekd_core.distributed`):

    1. the ranks check that they see the same cache key (same model, weights,
       preprocessing and pool content); if rank 0 finds the entry complete, all return;
    2. each rank encodes its contiguous run of whole batches (:func:`shard_rows`) into its
       own resumable shard entry ``<entry>/shards/<key>/`` (:func:`shard_cache`), written
       batch by batch through :class:`~.feature_cache.FeatureWriter`; a killed rank leaves
       its progress and a rerun continues there (a rank whose rows a partial
       single-process run already covered skips them);
    3. after every rank reports success (an all-reduce, so one failing rank fails all at
       once instead of a timeout), rank 0 copies the shards in row order into the entry
       itself, finalises it (``meta.json`` last, so it is complete only after the merge)
       and deletes the shards. The entry has the same key as a single-process extraction,
       so the app and single-process code reuse it.

    The ranks must share the project folder (one machine, or a shared filesystem across
    nodes); rank 0 says so when a shard is missing at merge time.

    Args:
        model, preprocess, pool, cache, image_size, dim, dtype, device, batch_size,
            num_workers, progress, cancel, on_batch: As for :func:`extract_features`
            (``progress`` reports this rank's shard).
        info: This process's :class:`activekd_core.distributed.DistInfo`.

    Returns:
        ``(features, report)``: the finished memmap on rank 0 (None on other ranks), and
        this rank's ``{"rank", "world_size", "rows": [start, stop], "encoded",
        "resumed_from", "cached"}``.

    Raises:
        RuntimeError: The ranks disagree on the cache key, or a rank failed (its own
            exception is re-raised on that rank), or a shard is missing at merge time.
        Cancelled: ``cancel`` was set on this rank.
    """
    n = len(pool)
    states = distributed.all_gather_object(
        {"key": cache.key, "complete": cache.complete, "done": (cache.progress() or {}).get("done", 0)}, info
    )
    keys = [s["key"] for s in states]
    if len(set(keys)) != 1:
        raise RuntimeError(
            f"ranks see different feature cache keys {keys} for {cache.dir.parent}: every rank must open the same "
            "pool (same images), model and weights"
        )
    start, stop = shard_rows(n, batch_size, info.world_size, info.rank)
    report: dict[str, Any] = {"rank": info.rank, "world_size": info.world_size, "rows": [start, stop], "encoded": 0,
                              "resumed_from": 0, "cached": bool(states[0]["complete"])}
    if states[0]["complete"]:
        return (cache.load() if info.is_main else None), report
    main_done = int(states[0]["done"] or 0)
    error: BaseException | None = None
    try:
        if start < stop and stop > main_done:
            report.update(_encode_shard(
                model, preprocess, pool, shard_cache(cache, start, stop), start, stop, image_size=image_size, dim=dim,
                dtype=dtype, device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
                cancel=cancel, on_batch=on_batch,
            ))
    except BaseException as exc:  # noqa: BLE001 - reported to the other ranks, then re-raised
        error = exc
    if not distributed.all_ok(error is None, info):
        if error is not None:
            raise error
        raise RuntimeError("sharded feature extraction failed on another rank (see its output); finished shards are kept")
    merged: np.memmap | None = None
    if info.is_main:
        try:
            ranges = [shard_rows(n, batch_size, info.world_size, r) for r in range(info.world_size)]
            merged = merge_shards(cache, n, dim, dtype, ranges, {
                "device": device.type, "batch_size": batch_size, "world_size": info.world_size,
                "shards": [list(r) for r in ranges],
            })
        except BaseException as exc:  # noqa: BLE001
            error = exc
    if not distributed.all_ok(error is None, info):
        if error is not None:
            raise error
        raise RuntimeError("rank 0 failed to merge the feature shards (see its output); the shards are kept")
    return merged, report


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
        device: ``auto`` (cuda, mps, cpu) or a torch device string.
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
            TeacherUnavailable: Weights missing offline, unknown model/tag, bad checkpoint.
        """
        with self._load_lock:
            if self._model is not None:
                return
            device = resolve_device(self.device_arg)
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
            folder.mkdir(parents=True, exist_ok=True)
            for c, row in zip(todo, new):
                protos[c] = self._text_cache[keys[c]] = row
                tmp = folder / f"{keys[c]}.tmp{os.getpid()}.npy"
                np.save(tmp, row)
                os.replace(tmp, folder / f"{keys[c]}.npy")
        return protos

    def raw_text_prototypes(self, progress: ProgressFn | None = None) -> np.ndarray:
        """Per class, the mean of its RAW (unnormalised) text embeddings ``(C, D)`` float32.

        CLAP starts its prototypes here and pulls them back here (their norm sets the
        strength of that pull). Kept in memory per (class texts) after the first call.
        """
        self.load()
        cache = self.__dict__.setdefault("_raw_text_cache", {})
        key = tuple(tuple(t) for t in self.class_texts)
        if key not in cache:
            cache[key] = self._encode_class_texts(self.class_texts, progress, normalise=False)
        return np.array(cache[key], dtype=np.float32)

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

    def display_name(self) -> str:
        """Short human-readable name (says so when the weights are random)."""
        if self.model_name.startswith("local-dir:"):
            return f"CLIP zero-shot (local folder {Path(self.model_name[len('local-dir:'):]).name})"
        if self.pretrained is None or str(self.pretrained).strip().lower() in RANDOM_WEIGHTS:
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
    "Cancelled",
    "ClipZeroShotTeacher",
    "encode_rows",
    "extract_features",
    "extract_features_sharded",
    "file_identity",
    "load_clip",
    "probs_from_features",
    "resolve_device",
    "merge_shards",
    "resolve_weights",
    "shard_cache",
    "shard_rows",
]
