"""The DHO (dual-head) student: one backbone, two linear heads on the pooled feature.

The student follows DHO (erjui/DHO) as used by PCoreSet: a ``ce_head`` trained with
cross-entropy on the human labels and a ``kd_head`` trained to match the teacher's
soft labels. Predictions mix both heads (:func:`combine_probs`).

Backbones:

* ``resnet18`` and ``mobilenet_v3_small`` from torchvision, ImageNet-pretrained as in the
  paper when ``pretrained=True`` (torchvision's weights API:
  ``ResNet18_Weights.IMAGENET1K_V1``, ``MobileNet_V3_Small_Weights.IMAGENET1K_V1``). The
  weights come from, in order: an explicit ``weights`` file; torchvision's own cache
  file (``$TORCH_HOME/hub/checkpoints/<name from the weights' URL>``); a download into
  that cache with progress, only when ``download=True``. Offline and missing, it fails
  at once with :class:`PretrainedWeightsMissing`, which says where to put the file.
  ``pretrained=False`` asks for a random initialisation explicitly; it is never a silent
  fallback. The returned ``info["init"]`` is ``"pretrained"`` or ``"random"``.
* ``small_cnn``: a three-conv CNN for small images (e.g. 32 px digits), always random
  initialised.

Inputs to :meth:`DHOStudent.forward` are normalised float tensors ``(N, 3, H, W)``;
:func:`prepare_batch` turns uint8 ``(N, H, W, 3)`` pixels into that form on the
target device (so data loaders only move bytes).

Checkpoints are safetensors files whose metadata holds a JSON header with the
architecture, class count and prediction mix (:func:`save_student`,
:func:`load_student`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from activekd_core.atomic import atomic_path

ARCHES: tuple[str, ...] = ("resnet18", "mobilenet_v3_small", "small_cnn")
CHECKPOINT_FORMAT = "activekd-dho-student/1"
_META_KEY = "activekd"

#: Per-channel mean/std used for every backbone (ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



def imagenet_weights(arch: str) -> Any:
    """torchvision's ImageNet weights entry for ``arch`` (``Weights.IMAGENET1K_V1``)."""
    import torchvision.models as tvm

    if arch == "resnet18":
        return tvm.ResNet18_Weights.IMAGENET1K_V1
    if arch == "mobilenet_v3_small":
        return tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    raise ValueError(f"{arch!r} has no ImageNet weights (only resnet18 and mobilenet_v3_small)")


def imagenet_cache_path(arch: str) -> Path:
    """Where torchvision keeps (and looks for) ``arch``'s ImageNet weights file."""
    from urllib.parse import urlparse

    name = os.path.basename(urlparse(imagenet_weights(arch).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


#: Default student of a new project per device type: the paper's ImageNet-pretrained
#: ResNet-18 at 224 px on a GPU; on a CPU the pretrained MobileNetV3-Small at 96 px (its
#: round time on a CPU is in bench/README.md).
RECOMMENDED_STUDENTS: dict[str, tuple[str, int]] = {
    "cuda": ("resnet18", 224),
    "cpu": ("mobilenet_v3_small", 96),
    "mps": ("mobilenet_v3_small", 128),
}


def recommended_student(device_type: str) -> tuple[str, int]:
    """``(arch, image_size)`` of a new project's student on ``device_type`` (``cuda``, ``cpu``, ``mps``)."""
    return RECOMMENDED_STUDENTS.get(device_type, RECOMMENDED_STUDENTS["cpu"])


class PretrainedWeightsMissing(FileNotFoundError):
    """Pretrained student weights were asked for but are not on this machine (offline)."""


class CheckpointError(Exception):
    """A student checkpoint could not be used (missing, corrupt, or another architecture)."""


class SmallCNN(nn.Module):
    """A compact CNN for small images (16-64 px); global average pooled output.

    Layout: a stride-2 3x3 stem, then two conv-BN-ReLU-maxpool blocks, then global
    average pooling, so a 32 px input is processed at 16, 8 and 4 px. Sized to train
    a round in seconds on a laptop CPU.

    Args:
        width: Channels of the stem; the blocks use 2x and 4x. The feature has
            ``4 * width`` dimensions.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return layers

        self.body = nn.Sequential(
            *block(3, w, 2, False),
            *block(w, 2 * w, 1, True),
            *block(2 * w, 4 * w, 1, True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 4 * w

    def forward(self, x: Tensor) -> Tensor:
        """Return pooled features ``(N, 4 * width)``."""
        return self.body(x)


class DHOStudent(nn.Module):
    """Backbone plus two linear heads (``ce_head``, ``kd_head``) on the pooled feature.

    Attributes:
        arch: Backbone name (one of :data:`ARCHES`).
        num_classes: Number of classes of both heads.
        feature_dim: Size of the pooled feature.
        alpha: Weight of the CE head in :meth:`predict_proba` (0.5 for DHO; 1.0 for a
            CE-only student whose KD head was never trained).
        beta: Temperature applied to the KD head's logits in :meth:`predict_proba`.
        image_size: Side length the student was trained at (None until trained).
    """

    def __init__(self, arch: str, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.backbone = backbone
        self.ce_head = nn.Linear(feature_dim, num_classes)
        self.kd_head = nn.Linear(feature_dim, num_classes)
        self.alpha = 0.5
        self.beta = 1.0
        self.image_size: int | None = None

    def features(self, x: Tensor) -> Tensor:
        """Pooled backbone features ``(N, feature_dim)`` of normalised images ``(N, 3, H, W)``."""
        return torch.flatten(self.backbone(x), 1)

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(ce_logits, kd_logits, features)`` in one backbone pass."""
        feats = self.features(x)
        return self.ce_head(feats), self.kd_head(feats), feats

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(ce_logits, kd_logits)``, each ``(N, num_classes)``."""
        feats = self.features(x)
        return self.ce_head(feats), self.kd_head(feats)

    def predict_proba(self, x: Tensor, alpha: float | None = None, beta: float | None = None) -> Tensor:
        """Combined class probabilities (see :func:`combine_probs`); defaults to the model's mix."""
        ce, kd = self(x)
        return combine_probs(
            ce, kd, self.alpha if alpha is None else alpha, self.beta if beta is None else beta
        )


def combine_probs(ce_logits: Tensor, kd_logits: Tensor, alpha: float = 0.5, beta: float = 1.0) -> Tensor:
    """Mix the two heads: ``alpha * softmax(ce) + (1 - alpha) * softmax(kd / beta)``.

    Args:
        ce_logits: CE-head logits ``(N, C)``.
        kd_logits: KD-head logits ``(N, C)``.
        alpha: Weight of the CE head, in [0, 1]. ``1.0`` uses the CE head only (the
            prediction rule for a CE-only, no-distillation student).
        beta: Temperature dividing the KD logits; must be > 0.

    Returns:
        Float32 probabilities ``(N, C)``; rows sum to 1.

    Raises:
        ValueError: If ``alpha`` is outside [0, 1], ``beta <= 0`` or the shapes differ.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"combine_probs: alpha must be in [0, 1], got {alpha}")
    if beta <= 0:
        raise ValueError(f"combine_probs: beta must be > 0, got {beta}")
    if ce_logits.shape != kd_logits.shape:
        raise ValueError(
            f"combine_probs: head shapes differ: ce {tuple(ce_logits.shape)} vs kd {tuple(kd_logits.shape)}"
        )
    p_ce = F.softmax(ce_logits.float(), dim=-1)
    if alpha == 1.0:
        return p_ce
    p_kd = F.softmax(kd_logits.float() / beta, dim=-1)
    return alpha * p_ce + (1.0 - alpha) * p_kd


def resolve_pretrained_file(arch: str, weights: Path | None = None, *, use_local_cache: bool = True,
                            download: bool = False) -> Path:
    """The ImageNet weights file for ``arch``: the given file, torchvision's cache, or a download.

    Args:
        arch: ``"resnet18"`` or ``"mobilenet_v3_small"``.
        weights: An explicit local file (``.pth`` state dict or ``.safetensors``).
        use_local_cache: Look in torchvision's cache (``$TORCH_HOME/hub/checkpoints``).
        download: When the cache has no file, download it there with a progress bar
            (torchvision's ``get_state_dict``); off by default so nothing contacts
            another host unless asked.

    Raises:
        FileNotFoundError: ``weights`` given but missing.
        PretrainedWeightsMissing: No file, and no download allowed or possible; the
            message names the file to put in place.
    """
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"student weights file {path} does not exist")
        return path
    cached = imagenet_cache_path(arch)
    if use_local_cache and cached.is_file():
        return cached
    entry = imagenet_weights(arch)
    how = (f"ImageNet weights for the {arch} student are not on this machine. Download {entry.url} "
           f"elsewhere and copy it to {cached} (torchvision's cache; TORCH_HOME moves it), or give a local "
           "file as the student's weights, or choose a random initialisation explicitly (pretrained off)")
    if not download:
        raise PretrainedWeightsMissing(how + "; downloading is off (enable it to fetch the file once).")
    try:
        entry.get_state_dict(progress=True)  # torchvision writes the file into the hub cache
    except Exception as exc:  # offline: URLError, socket errors, ...
        raise PretrainedWeightsMissing(f"{how}. The download failed: {type(exc).__name__}: {exc}") from exc
    if not cached.is_file():
        raise PretrainedWeightsMissing(f"{how}. The download did not leave {cached}.")
    return cached


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return state


def _torchvision_backbone(arch: str) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    if arch == "resnet18":
        net = tvm.resnet18(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    net = tvm.mobilenet_v3_small(weights=None)
    # Pooled feature = the 576-d average-pooled output of the last conv block.
    dim = net.classifier[0].in_features
    net.classifier = nn.Identity()
    return net, dim


def build_student(
    arch: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: Path | None = None,
    use_local_cache: bool = True,
    download: bool = False,
    width: int = 16,
) -> tuple[DHOStudent, dict[str, Any]]:
    """Build a fresh DHO student.

    Args:
        arch: ``"resnet18"``, ``"mobilenet_v3_small"`` or ``"small_cnn"``.
        num_classes: Number of classes (>= 2).
        pretrained: Start a torchvision backbone from ImageNet weights
            (:func:`resolve_pretrained_file`); ``False`` is an explicit random init.
            Ignored for ``small_cnn`` (which has no pretrained weights).
        weights: Local ImageNet weights file for a torchvision backbone (``.pth``
            loaded with ``weights_only=True``, or ``.safetensors``); implies
            ``pretrained``. Keys of the original classifier are ignored.
        use_local_cache: Look for torchvision's cached ImageNet file.
        download: Download the file into torchvision's cache when missing.
        width: First-block width of ``small_cnn``.

    Returns:
        ``(model, info)``; ``info`` has ``arch``, ``num_classes``, ``feature_dim``,
        ``init`` (``"pretrained"`` or ``"random"``) and ``weights`` (file used or None).

    Raises:
        ValueError: Unknown ``arch`` or bad ``num_classes``, or a weights file that does
            not fit the backbone.
        FileNotFoundError: ``weights`` given but missing.
        PretrainedWeightsMissing: ``pretrained`` and no file (see :func:`resolve_pretrained_file`).
    """
    if arch not in ARCHES:
        raise ValueError(f"build_student: unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    if int(num_classes) < 2:
        raise ValueError(f"build_student: num_classes must be >= 2, got {num_classes}")
    info: dict[str, Any] = {"arch": arch, "num_classes": int(num_classes), "init": "random", "weights": None}
    if arch == "small_cnn":
        if weights is not None:
            raise ValueError("build_student: small_cnn has no ImageNet weights; pass weights=None")
        backbone: nn.Module = SmallCNN(width)
        dim = backbone.out_dim  # type: ignore[assignment]
        info["width"] = width
    else:
        backbone, dim = _torchvision_backbone(arch)
        path = None
        if pretrained or weights is not None:
            path = resolve_pretrained_file(arch, weights, use_local_cache=use_local_cache, download=download)
        if path is not None:
            state = _read_state_dict(path)
            state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
            try:
                missing, unexpected = backbone.load_state_dict(state, strict=False)
            except RuntimeError as exc:
                raise ValueError(f"build_student: weights file {path} does not fit {arch}: {exc}") from exc
            missing = [k for k in missing if not k.startswith(("fc.", "classifier."))]
            if missing or unexpected:
                raise ValueError(
                    f"build_student: weights file {path} does not fit {arch}: "
                    f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                    f"(e.g. {unexpected[:3]})"
                )
            info["init"] = "pretrained"
            info["weights"] = str(path)
    model = DHOStudent(arch, backbone, dim, num_classes)
    info["feature_dim"] = int(dim)
    model.build_info = info  # type: ignore[assignment]
    return model, info


_NORM_CACHE: dict[str, tuple[Tensor, Tensor]] = {}


def _norm_constants(device: torch.device) -> tuple[Tensor, Tensor]:
    # Cached per device: creating them every batch would be a blocking host-to-device copy.
    key = str(device)
    if key not in _NORM_CACHE:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        _NORM_CACHE[key] = ((1.0 / (255.0 * std)).to(device), (-mean / std).to(device))
    return _NORM_CACHE[key]


def prepare_batch(pixels: Tensor, device: torch.device | None = None, channels_last: bool = False) -> Tensor:
    """Turn uint8 ``(N, H, W, 3)`` pixels into normalised float ``(N, 3, H, W)`` on ``device``.

    Args:
        pixels: uint8 tensor ``(N, H, W, 3)`` (CPU or already on ``device``).
        device: Target device (default: the tensor's device).
        channels_last: Return channels-last memory format (faster convolutions on CUDA).
    """
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(
            f"prepare_batch: expected uint8 (N, H, W, 3) pixels, got {pixels.dtype} {tuple(pixels.shape)}"
        )
    device = torch.device(device) if device is not None else pixels.device
    x = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    scale, shift = _norm_constants(device)
    x = x * scale + shift  # == (x / 255 - mean) / std
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def _unwrap(model: nn.Module) -> DHOStudent:
    inner = getattr(model, "module", model)
    if not isinstance(inner, DHOStudent):
        raise TypeError(f"expected a DHOStudent, got {type(inner).__name__}")
    return inner


def save_student(model: nn.Module, path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a student to a safetensors file atomically (temp file in the same folder, then rename).

    Args:
        model: A :class:`DHOStudent` (or a DDP wrapper around one).
        path: Destination ``.safetensors`` file; a previous file stays intact until the
            new one is complete.
        extra: JSON-serialisable metadata stored in the header (e.g. metrics).

    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    student = _unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": CHECKPOINT_FORMAT,
        "arch": student.arch,
        "num_classes": student.num_classes,
        "feature_dim": student.feature_dim,
        "alpha": student.alpha,
        "beta": student.beta,
        "image_size": student.image_size,
        "width": getattr(student, "build_info", {}).get("width"),
        "extra": extra or {},
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in student.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(header)})
    return path


def read_checkpoint_header(path: Path) -> dict[str, Any]:
    """Read the JSON header of a student checkpoint without loading tensors.

    Raises:
        CheckpointError: If the file is missing, not safetensors, or not a student checkpoint.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: student checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if _META_KEY not in meta:
        raise CheckpointError(f"{path}: safetensors file has no ActiveKD student header")
    header = json.loads(meta[_META_KEY])
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {header.get('format')!r}")
    return header


def load_student(
    path: Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[DHOStudent, dict[str, Any]]:
    """Load a student saved by :func:`save_student`.

    Args:
        path: The ``.safetensors`` checkpoint.
        arch: If given, the architecture the caller expects; another one is an error.
        num_classes: If given, the class count the caller expects.
        map_location: Device for the tensors.

    Returns:
        ``(model, header)`` with the model in eval mode.

    Raises:
        CheckpointError: Missing/corrupt file, or architecture/class count not as expected.
    """
    from safetensors.torch import load_file

    header = read_checkpoint_header(path)
    if arch is not None and header["arch"] != arch:
        raise CheckpointError(
            f"{path}: checkpoint is a {header['arch']} student, but a {arch} student was requested"
        )
    if num_classes is not None and int(header["num_classes"]) != int(num_classes):
        raise CheckpointError(
            f"{path}: checkpoint has {header['num_classes']} classes, but {num_classes} were expected"
        )
    kwargs: dict[str, Any] = {"use_local_cache": False}
    if header["arch"] == "small_cnn" and header.get("width"):
        kwargs["width"] = int(header["width"])
    model, _ = build_student(header["arch"], int(header["num_classes"]), **kwargs)
    state = load_file(str(path), device=str(map_location))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: tensors do not fit a {header['arch']} student: {exc}") from exc
    model.alpha = float(header.get("alpha", 0.5))
    model.beta = float(header.get("beta", 1.0))
    model.image_size = header.get("image_size")
    model.eval()
    return model, header
