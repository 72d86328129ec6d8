"""DHO student: shapes per architecture, combine_probs, checkpoints."""

from __future__ import annotations

import pytest
import torch

from activekd_core.student import (
    ARCHES,
    CheckpointError,
    build_student,
    combine_probs,
    load_student,
    prepare_batch,
    save_student,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("arch,size", [("small_cnn", 16), ("resnet18", 32), ("mobilenet_v3_small", 32)])
def test_student_shapes(arch, size):
    model, info = build_student(arch, 5, use_local_cache=False)
    model.eval()
    x = torch.randn(2, 3, size, size)
    ce, kd = model(x)
    assert ce.shape == (2, 5) and kd.shape == (2, 5)
    feats = model.features(x)
    assert feats.shape == (2, info["feature_dim"])
    ce2, kd2, f2 = model.forward_all(x)
    assert torch.allclose(ce, ce2) and torch.allclose(kd, kd2) and torch.allclose(feats, f2)
    assert info["init"] == "random" and info["weights"] is None
    p = model.predict_proba(x)
    assert torch.allclose(p.sum(1), torch.ones(2), atol=1e-5)


def test_feature_dims_are_the_backbone_pooled_features():
    assert build_student("resnet18", 3, use_local_cache=False)[1]["feature_dim"] == 512
    assert build_student("mobilenet_v3_small", 3, use_local_cache=False)[1]["feature_dim"] == 576
    assert build_student("small_cnn", 3, width=8)[1]["feature_dim"] == 32


def test_unknown_arch_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_student("vgg", 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_student("resnet18", 3, weights=tmp_path / "nope.pth")


def test_local_imagenet_weights_file_is_used_and_reported(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    model, info = build_student("resnet18", 4, weights=path)
    assert info["init"] == "pretrained" and info["weights"] == str(path)
    assert torch.equal(model.backbone.conv1.weight, ref.conv1.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="does not fit"):
        build_student("resnet18", 4, weights=bad)


def test_combine_probs_formula():
    ce = torch.tensor([[1.0, 2.0, 0.0]])
    kd = torch.tensor([[0.0, -1.0, 3.0]])
    got = combine_probs(ce, kd, alpha=0.3, beta=2.0)
    want = 0.3 * torch.softmax(ce, -1) + 0.7 * torch.softmax(kd / 2.0, -1)
    assert torch.allclose(got, want, atol=1e-7)
    assert torch.allclose(combine_probs(ce, kd, alpha=1.0), torch.softmax(ce, -1))
    assert torch.allclose(combine_probs(ce, kd, alpha=0.0), torch.softmax(kd, -1))
    with pytest.raises(ValueError, match="alpha"):
        combine_probs(ce, kd, alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        combine_probs(ce, kd, beta=0.0)


def test_prepare_batch_normalises_uint8_nhwc():
    px = torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)
    x = prepare_batch(px)
    assert x.shape == (2, 3, 4, 4)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        prepare_batch(px.float())


def test_safetensors_round_trip_and_wrong_arch(tmp_path):
    model, _ = build_student("small_cnn", 4, width=8)
    model.alpha, model.image_size = 1.0, 16
    path = save_student(model, tmp_path / "s.safetensors", extra={"note": "x"})
    loaded, header = load_student(path, arch="small_cnn", num_classes=4)
    assert header["extra"] == {"note": "x"} and loaded.alpha == 1.0 and loaded.image_size == 16
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(model(x)[0], loaded(x)[0])
    with pytest.raises(CheckpointError, match="small_cnn student, but a resnet18"):
        load_student(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="4 classes"):
        load_student(path, num_classes=7)
    with pytest.raises(CheckpointError, match="not found"):
        load_student(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_student(junk)


def test_every_arch_is_covered():
    assert set(ARCHES) == {"resnet18", "mobilenet_v3_small", "small_cnn"}


def _fake_imagenet_file(torch_home, arch: str):
    """A weights file in torchvision's format (a state dict saved with torch.save) under the
    name torchvision's weights API expects, inside ``torch_home``/hub/checkpoints."""
    import os
    from urllib.parse import urlparse

    import torchvision

    entry = {"resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
             "mobilenet_v3_small": torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1}[arch]
    net = getattr(torchvision.models, arch)(weights=None)
    path = torch_home / "hub" / "checkpoints" / os.path.basename(urlparse(entry.url).path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net, path


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_pretrained_student_loads_torchvisions_cached_file(tmp_path, monkeypatch, arch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    net, path = _fake_imagenet_file(tmp_path / "th", arch)
    from activekd_core.student import imagenet_cache_path

    assert imagenet_cache_path(arch) == path
    model, info = build_student(arch, 3, pretrained=True)
    assert info["init"] == "pretrained" and info["weights"] == str(path)
    first = next(iter(net.state_dict()))
    assert torch.equal(model.backbone.state_dict()[first], net.state_dict()[first])
    # pretrained=False is an explicit random init even when the file is there
    assert build_student(arch, 3, pretrained=False)[1]["init"] == "random"


def test_missing_pretrained_weights_fail_fast_and_say_where(tmp_path, monkeypatch):
    from activekd_core.student import PretrainedWeightsMissing

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(PretrainedWeightsMissing) as err:
        build_student("mobilenet_v3_small", 3, pretrained=True)
    message = str(err.value)
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth") in message
    assert "download.pytorch.org" in message and "random" in message
    with pytest.raises(PretrainedWeightsMissing):  # the cache is ignored when told so
        _fake_imagenet_file(tmp_path / "empty", "resnet18")
        build_student("resnet18", 3, pretrained=True, use_local_cache=False)


def test_small_cnn_is_random_and_ignores_pretrained():
    assert build_student("small_cnn", 3, pretrained=True, width=8)[1]["init"] == "random"
