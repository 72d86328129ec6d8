"""CLIP zero-shot teacher end to end on a tiny random open_clip model (no download)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from activekd_core.images import ImagePool
from activekd_core.teachers import Cancelled, ClipZeroShotTeacher, TeacherUnavailable, make_teacher
from activekd_core.teachers.clip_zero_shot import probs_from_features
from activekd_core.teachers.weights import resolve_weights

torch.set_num_threads(1)
TINY = "akd-tiny-clip"
CLASSES = ["red square", "green circle", "blue stripes"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> ImagePool:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    ids = []
    for i in range(11):
        h, w = 30 + 7 * i, 80 - 3 * i
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arr[:, :, i % 3] = 255
        sub = root / f"c{i % 3}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(arr).save(sub / f"img{i:02d}.png")
        ids.append(f"c{i % 3}/img{i:02d}.png")
    return ImagePool(root=root, ids=sorted(ids))


def tiny(cache: Path, **kw) -> ClipZeroShotTeacher:
    kw.setdefault("batch_size", 4)
    kw.setdefault("num_workers", 0)
    return ClipZeroShotTeacher(CLASSES, model_name=TINY, pretrained=None, cache_dir=cache, device="cpu", **kw)


def test_probabilities_valid_and_cache_reused(pool: ImagePool, tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    t = tiny(tmp_path)
    p = t.predict_proba(pool, progress=lambda d, n, m: seen.append((d, n, m)))
    assert p.shape == (len(pool), len(CLASSES)) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p >= 0).all()
    assert t.images_encoded == len(pool)
    image_msgs = [m for m in seen if "images/s" in m[2]]
    assert image_msgs[-1][0] == image_msgs[-1][1] == len(pool)
    assert seen[-1][2].startswith("Encoding prompts") and seen[-1][0] == seen[-1][1]

    # Same object: no re-encode. A fresh object on the same cache: no re-encode either.
    p2 = t.predict_proba(pool)
    assert t.images_encoded == len(pool)
    t2 = tiny(tmp_path)
    p3 = t2.predict_proba(pool)
    assert t2.images_encoded == 0
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_allclose(p, p3, atol=1e-6)
    d = t.describe()
    json.dumps(d)
    assert d["kind"] == "clip_zero_shot" and d["random_weights"] is True
    assert "not a trained CLIP" in d["display_name"]
    assert d["feature_cache"]["n"] == len(pool)


def test_changing_prompts_costs_a_text_pass_only(pool: ImagePool, tmp_path: Path) -> None:
    t = tiny(tmp_path, templates="single")
    p = t.predict_proba(pool)
    t.set_prompts({"red square": ["a red square", "a {} drawing"]}, templates=["a photo of a {}.", "art of a {}."])
    p2 = t.predict_proba(pool)
    assert t.images_encoded == len(pool) and t.text_passes == 2
    assert not np.allclose(p, p2)
    assert t.class_texts[0] == ["a photo of a red square.", "art of a red square.", "a red square", "a red square drawing"]
    # Editing one class's prompt re-encodes that class's texts only; the others come from the cache.
    before = t.texts_encoded
    t.set_prompts({"red square": ["a red square", "a {} drawing"], "blue stripes": "blue and white stripes"},
                  templates=["a photo of a {}.", "art of a {}."])
    p3 = t.predict_proba(pool)
    assert t.texts_encoded - before == 3 and t.text_passes == 3
    np.testing.assert_array_equal(p3[:, :2].argmax(1) == 0, p2[:, :2].argmax(1) == 0)
    fresh = tiny(tmp_path, templates=["a photo of a {}.", "art of a {}."])
    fresh.set_prompts({"red square": ["a red square", "a {} drawing"], "blue stripes": "blue and white stripes"},
                      templates=["a photo of a {}.", "art of a {}."])
    np.testing.assert_allclose(fresh.predict_proba(pool), p3, atol=1e-6)
    assert fresh.texts_encoded == 0 and fresh.images_encoded == 0  # all from the disk caches


def test_text_ensemble_is_renormalised_mean(pool: ImagePool, tmp_path: Path) -> None:
    t = tiny(tmp_path, templates=["a {}.", "the {}!"])
    protos = t.text_prototypes()
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)
    tok = open_clip.get_tokenizer(TINY)
    with torch.inference_mode():
        emb = torch.nn.functional.normalize(t._model.encode_text(tok(["a green circle.", "the green circle!"])), dim=-1)
    ref = torch.nn.functional.normalize(emb.mean(0), dim=0).numpy()
    np.testing.assert_allclose(protos[1], ref, atol=1e-5)
    feats = t.image_features(pool)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-4)
    logits = 100.0 * np.asarray(feats) @ protos.T
    ref_p = np.exp(logits - logits.max(1, keepdims=True))
    ref_p /= ref_p.sum(1, keepdims=True)
    np.testing.assert_allclose(t.predict_proba(pool), ref_p, atol=1e-5)


def test_resume_after_interruption_equals_uninterrupted(pool: ImagePool, tmp_path: Path) -> None:
    full = tiny(tmp_path / "a").image_features(pool)

    class Boom(Exception):
        pass

    def stop_after_two_batches(done: int, total: int, message: str) -> None:
        if done >= 8:
            raise Boom

    t = tiny(tmp_path / "b")
    with pytest.raises(Boom):
        t.predict_proba(pool, progress=stop_after_two_batches)
    cache = t.feature_cache(pool)
    assert not cache.complete and cache.progress()["done"] == 8
    with pytest.raises(FileNotFoundError):
        cache.load()  # a partial entry is never read as complete

    t2 = tiny(tmp_path / "b")
    resumed = t2.image_features(pool)
    assert t2.images_encoded == len(pool) - 8
    np.testing.assert_allclose(np.asarray(resumed), np.asarray(full), atol=1e-6)
    assert t2.feature_cache(pool).meta()["resumed_from"] == 8


def test_cancel_keeps_finished_rows(pool: ImagePool, tmp_path: Path) -> None:
    cancel = threading.Event()
    t = tiny(tmp_path)
    with pytest.raises(Cancelled):
        t.predict_proba(pool, progress=lambda d, n, m: cancel.set() if d >= 4 else None, cancel=cancel)
    assert t.feature_cache(pool).progress()["done"] == 4
    t.predict_proba(pool)
    assert t.images_encoded == len(pool)


def test_a_teacher_cancel_is_the_package_wide_cancel(pool: ImagePool, tmp_path: Path) -> None:
    """A job runner recognises a cancelled feature pass with the one shared exception class."""
    from activekd_core import progress

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(progress.Cancelled):
        tiny(tmp_path).predict_proba(pool, cancel=cancel)


def test_unreadable_image_gives_uniform_row_and_is_reported(pool: ImagePool, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 80, 10, 10)).save(root / f"{i}.png")
    (root / "9.png").write_bytes(b"not an image")
    bad_pool = ImagePool(root=root, ids=["0.png", "1.png", "2.png", "9.png"])
    t = tiny(tmp_path / "c")
    p = t.predict_proba(bad_pool)
    np.testing.assert_allclose(p[3], 1.0 / 3, atol=1e-6)
    failed = t.describe()["feature_cache"]["failed"]
    assert [f[:2] for f in failed] == [[3, "9.png"]]


def test_multiworker_loader_and_float16_storage(pool: ImagePool, tmp_path: Path) -> None:
    ref = tiny(tmp_path / "a").image_features(pool)
    t = tiny(tmp_path / "b", num_workers=2, feature_dtype="float16")
    f16 = t.image_features(pool)
    assert f16.dtype == np.float16
    np.testing.assert_allclose(np.asarray(f16, dtype=np.float32), np.asarray(ref), atol=2e-3)


def test_offline_tag_fails_fast_with_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(TeacherUnavailable) as err:
        ClipZeroShotTeacher(["a", "b"], model_name="ViT-B-32", pretrained="openai").load()
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "pretrained" in msg and "local-dir:" in msg and "HF_HUB_OFFLINE" in msg


def test_unreachable_hub_fails_fast_without_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(TeacherUnavailable, match="supply the weights locally"):
        resolve_weights("ViT-B-32", "laion2b_s34b_b79k")
    assert time.perf_counter() - start < 10


def test_missing_file_and_unknown_tag_and_model(tmp_path: Path) -> None:
    with pytest.raises(TeacherUnavailable, match="does not exist"):
        resolve_weights(TINY, str(tmp_path / "nope.bin"))
    with pytest.raises(TeacherUnavailable, match="not a known tag"):
        resolve_weights("ViT-B-32", "no-such-tag")
    with pytest.raises(TeacherUnavailable, match="unknown open_clip model"):
        resolve_weights("No-Such-Model", None)
    with pytest.raises(TeacherUnavailable, match="no open_clip_config.json"):
        resolve_weights(f"local-dir:{tmp_path}", None)


def _saved_tiny(seed: int) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY, pretrained=None)
    model.eval()
    return model, {k: v.clone().contiguous() for k, v in model.state_dict().items()}


def _reference_features(model: torch.nn.Module, pool: ImagePool) -> np.ndarray:
    from activekd_core.images import load_rgb

    _, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    x = torch.stack([preprocess(load_rgb(pool.path(i))) for i in range(len(pool))])
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()


def test_local_checkpoint_file_torch_and_safetensors(pool: ImagePool, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model, state = _saved_tiny(seed=123)
    ref = _reference_features(model, pool)
    torch.save(state, tmp_path / "tiny.pt")
    save_file(state, str(tmp_path / "tiny.safetensors"))
    for name in ("tiny.pt", "tiny.safetensors"):
        t = ClipZeroShotTeacher(CLASSES, model_name=TINY, pretrained=str(tmp_path / name), cache_dir=tmp_path / "cache",
                                device="cpu", num_workers=0)
        feats = t.image_features(pool)
        np.testing.assert_allclose(np.asarray(feats), ref, atol=1e-5)
        d = t.describe()
        assert d["weights"]["type"] == "file" and d["weights"]["identity"]["size"] > 0 and not d["random_weights"]
    # Different weights never reuse another checkpoint's cache.
    _, other = _saved_tiny(seed=7)
    torch.save(other, tmp_path / "other.pt")
    t = ClipZeroShotTeacher(CLASSES, model_name=TINY, pretrained=str(tmp_path / "other.pt"), cache_dir=tmp_path / "cache",
                            device="cpu", num_workers=0)
    assert not np.allclose(np.asarray(t.image_features(pool)), ref, atol=1e-3)


def test_local_dir_checkpoint(pool: ImagePool, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model, state = _saved_tiny(seed=5)
    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    cfg = open_clip.get_model_config(TINY)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    with pytest.raises(TeacherUnavailable, match="holds no weights"):
        ClipZeroShotTeacher(CLASSES, model_name=f"local-dir:{folder}", cache_dir=tmp_path / "c").load()
    save_file(state, str(folder / "open_clip_model.safetensors"))
    t = ClipZeroShotTeacher(CLASSES, model_name=f"local-dir:{folder}", cache_dir=tmp_path / "c", device="cpu", num_workers=0)
    np.testing.assert_allclose(np.asarray(t.image_features(pool)), _reference_features(model, pool), atol=1e-5)
    assert t.describe()["weights"]["type"] == "local-dir"


def test_model_logit_scale_option_and_factory_roundtrip(pool: ImagePool, tmp_path: Path) -> None:
    t = tiny(tmp_path, logit_scale=None)
    assert abs(t.scale - 1 / 0.07) < 1e-3  # open_clip's initial learned scale
    p = t.predict_proba(pool)
    rebuilt = make_teacher(t.describe()["spec"], cache_dir=tmp_path, device="cpu")
    np.testing.assert_allclose(rebuilt.predict_proba(pool), p, atol=1e-6)
    assert rebuilt.images_encoded == 0


def test_probs_from_features_chunks_and_memmap_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    f = rng.standard_normal((1000, 16)).astype(np.float32)
    w = rng.standard_normal((7, 16)).astype(np.float32)
    logits = 3.0 * f.astype(np.float64) @ w.T.astype(np.float64)
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(probs_from_features(f, w, 3.0, chunk_rows=97), ref, atol=1e-5)
    np.testing.assert_allclose(probs_from_features(f, w, 3.0, chunk_rows=97, device="cpu"), ref, atol=1e-5)  # torch path
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(1000, 7))
    probs_from_features(f.astype(np.float16), w, 3.0, out=out, chunk_rows=256)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), ref, atol=1e-2)


def test_describe_does_not_load_and_reports_unavailable_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    t = tiny(tmp_path)
    d = t.describe()
    assert t._model is None and d["loaded"] is False and d["available"] and d["random_weights"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    off = ClipZeroShotTeacher(["a", "b"], model_name="ViT-B-32", pretrained="openai", cache_dir=tmp_path)
    d = off.describe()
    json.dumps(d)
    assert d["available"] is False and "local-dir:" in d["error"] and d["display_name"] == "CLIP zero-shot (ViT-B-32, openai)"
    with pytest.raises(TeacherUnavailable):
        off.predict_proba(ImagePool(root=tmp_path, ids=[]))


def test_hf_hub_model_from_local_cache_offline(pool: ImagePool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, state = _saved_tiny(seed=11)
    repo_dir = tmp_path / "hub" / "models--someorg--tiny-clip"
    snapshot = repo_dir / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("a" * 40)
    with pytest.raises(TeacherUnavailable, match="not in the local Hugging Face cache"):
        resolve_weights("hf-hub:someorg/tiny-clip", None, hf_cache_dir=str(tmp_path / "hub"))
    (snapshot / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config(TINY)}))
    save_file(state, str(snapshot / "open_clip_model.safetensors"))
    t = ClipZeroShotTeacher(CLASSES, model_name="hf-hub:someorg/tiny-clip", hf_cache_dir=str(tmp_path / "hub"),
                            cache_dir=tmp_path / "c", device="cpu", num_workers=0)
    np.testing.assert_allclose(np.asarray(t.image_features(pool)), _reference_features(model, pool), atol=1e-5)
    assert t.describe()["weights"]["identity"] == {"type": "hf-hub", "repo": "someorg/tiny-clip", "revision": "a" * 40}


def test_tag_found_in_local_hf_cache_resolves_to_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = open_clip.get_pretrained_cfg("RN50", "openai")
    repo = cfg["hf_hub"].rstrip("/")
    repo_dir = tmp_path / "hub" / ("models--" + repo.replace("/", "--"))
    (repo_dir / "snapshots" / ("b" * 40)).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("b" * 40)
    weights = repo_dir / "snapshots" / ("b" * 40) / "open_clip_model.safetensors"
    weights.write_bytes(b"placeholder")
    info = resolve_weights("RN50", "openai", hf_cache_dir=str(tmp_path / "hub"))
    assert info["type"] == "tag" and info["create_pretrained"] == str(weights)
    assert info["force"]["force_quick_gelu"] is True  # the tag's settings travel with the file
    assert info["force"]["force_preprocess_cfg"]["mean"] == cfg["mean"]


def test_mobileclip_runs_in_its_inference_form_with_the_same_features() -> None:
    """MobileCLIP's multi-branch blocks are folded on load (faster on CPU); features do not change."""
    from activekd_core.teachers.clip_model import load_clip

    model, _, _, _ = load_clip("MobileCLIP2-S0", None, device=torch.device("cpu"), seed=3)
    branched = [m for m in model.modules() if hasattr(m, "reparam_conv")]
    assert branched and all(m.reparam_conv is not None for m in branched)  # every block folded
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)  # the same random weights as load_clip's
        plain = open_clip.create_model("MobileCLIP2-S0", pretrained=None).eval()
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        b = torch.nn.functional.normalize(plain.encode_image(x), dim=-1)
    assert float((a * b).sum(-1).min()) > 0.9999
