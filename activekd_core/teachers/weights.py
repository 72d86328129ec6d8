"""Where CLIP weights come from: resolve a model name and weights argument without downloading.

Weights can be given as

- ``model_name`` + a pretrained *tag* (``"ViT-B-32"``, ``"laion2b_s34b_b79k"``): taken from
  the Hugging Face cache when present, downloaded when online; offline and not cached
  it fails at once with :class:`~activekd_core.teachers.base.TeacherUnavailable` instead
  of retrying the hub;
- ``model_name`` + ``pretrained="/path/to/open_clip_pytorch_model.bin"`` (or
  ``.safetensors``/``.pt``): a local checkpoint file for that architecture;
- ``model_name="local-dir:/path/to/folder"``: a folder holding ``open_clip_config.json``
  and the weights (the layout of open_clip's Hugging Face repos);
- ``model_name="hf-hub:org/repo"``: a Hugging Face repo, from the local cache when present;
- ``pretrained=None``: random weights, seeded (for tests and benchmarks only; never a
  useful teacher).

:func:`resolve_weights` returns the arguments for open_clip plus an ``identity`` that
feature-cache keys use; :func:`file_identity` identifies a checkpoint file cheaply.
Importing this module registers the package's own open_clip configs (``configs/``, e.g.
the tiny ``akd-tiny-clip`` used by tests and benches), so their names resolve.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip

from activekd_core.teachers.base import TeacherUnavailable

CONFIG_DIR = Path(__file__).with_name("configs")
open_clip.add_model_config(CONFIG_DIR)  # registers "akd-tiny-clip" (tests and benches)

RANDOM_WEIGHTS = ("random", "none", "")
"""``pretrained`` values (lower-cased) that mean seeded random weights."""


def is_random_weights(pretrained: str | None) -> bool:
    """True when ``pretrained`` asks for random weights (None, ``"random"``, ``"none"`` or empty)."""
    return pretrained is None or str(pretrained).strip().lower() in RANDOM_WEIGHTS


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


def how_to_supply(model_name: str, pretrained: str | None, cfg: Mapping[str, Any] | None) -> str:
    """The instructions a :class:`TeacherUnavailable` message ends with: how to supply weights offline."""
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
                f"local CLIP folder {folder} has no open_clip_config.json. " + how_to_supply(model_name, pretrained, None)
            )
        ckpt = open_clip.factory._find_checkpoint_in_dir(folder)
        if ckpt is None:
            raise TeacherUnavailable(
                f"local CLIP folder {folder} holds no weights (*.safetensors, *.bin or *.pth); "
                "the model would be random. " + how_to_supply(model_name, pretrained, None)
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
                "(offline or HF_HUB_OFFLINE=1). " + how_to_supply(model_name, pretrained, None)
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
    if is_random_weights(pretrained):
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
        raise TeacherUnavailable(f"CLIP weights not found: {what}. " + how_to_supply(model_name, pretrained, None))

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
            "downloaded here (no internet, or HF_HUB_OFFLINE=1). " + how_to_supply(model_name, pretrained, cfg)
        )
    return {"type": "tag", "create_name": model_name, "create_pretrained": pretrained, "force": {}, "identity": identity}


__all__ = ["CONFIG_DIR", "RANDOM_WEIGHTS", "file_identity", "how_to_supply", "is_random_weights", "resolve_weights"]
