"""Feature cache entries: ordered writes, resume, completion only after finalise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activekd_core.teachers.feature_cache import FeatureCache


def test_write_resume_finalise(tmp_path: Path) -> None:
    fields = {"model": "m", "pool": "abc"}
    cache = FeatureCache(tmp_path, fields)
    data = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    w = cache.open_writer(10, 4)
    w.write(0, data[:3])
    with pytest.raises(ValueError, match="in order"):
        w.write(5, data[5:6])
    w.write(3, data[3:6], failed=[[4, "x.png", "corrupt"]])
    del w
    assert not cache.complete and cache.progress()["done"] == 6

    again = FeatureCache(tmp_path, dict(fields))
    w2 = again.open_writer(10, 4)
    assert w2.done == 6 and w2.failed == [[4, "x.png", "corrupt"]]
    with pytest.raises(RuntimeError, match="6/10 rows"):
        w2.finalize()
    w2.write(6, data[6:])
    out = w2.finalize({"note": 1})
    assert again.complete and again.progress() is None
    np.testing.assert_array_equal(np.asarray(out), data)
    assert again.meta()["failed"] == [[4, "x.png", "corrupt"]] and again.meta()["note"] == 1


def test_shape_change_restarts_and_keys_differ(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, {"a": 1})
    w = cache.open_writer(5, 3, "float16")
    w.write(0, np.ones((2, 3), np.float16))
    w2 = FeatureCache(tmp_path, {"a": 1}).open_writer(5, 4, "float16")
    assert w2.done == 0
    assert FeatureCache(tmp_path, {"a": 2}).key != cache.key
    with pytest.raises(ValueError, match="float32 or float16"):
        cache.open_writer(5, 3, "int8")


def test_crash_between_rename_and_meta_is_not_complete_and_finishes_again(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, {"a": 1})
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    w = cache.open_writer(4, 3)
    w.write(0, data)
    w._mm.flush()
    del w
    (cache.dir / "features.partial.npy").rename(cache.dir / "features.npy")  # killed before meta.json
    assert not cache.complete
    with pytest.raises(FileNotFoundError, match="not complete"):
        cache.load()
    w2 = FeatureCache(tmp_path, {"a": 1}).open_writer(4, 3)
    assert w2.done == 4
    np.testing.assert_array_equal(np.asarray(w2.finalize()), data)
    assert cache.complete
