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


def test_permuted_order_partial_view_resume_and_finalise(tmp_path: Path) -> None:
    """Rows are encoded in a seeded permutation; the finished ones are readable while writing; resume keeps the order."""
    from activekd_core.teachers.feature_cache import encode_order

    data = np.random.default_rng(1).standard_normal((20, 3)).astype(np.float32)
    cache = FeatureCache(tmp_path, {"a": 1})
    w = cache.open_writer(20, 3, order_seed=5)
    order = encode_order(20, 5)
    assert np.array_equal(w.order, order) and not np.array_equal(order, np.arange(20))
    assert cache.partial().rows.size == 0
    w.write(0, data[order[:6]])
    part = cache.partial()
    assert np.array_equal(part.rows, np.sort(order[:6]))  # the encoded rows, by pool row
    np.testing.assert_array_equal(part.features, data[part.rows])
    assert part.status.done == 6 and part.status.total == 20 and part.status.seed == 5
    state = cache.progress()
    assert state["done"] == 6 and state["order"] == {"seed": 5}
    del w

    w2 = FeatureCache(tmp_path, {"a": 1}).open_writer(20, 3, order_seed=99)  # the recorded order wins
    assert w2.done == 6 and w2.seed == 5 and np.array_equal(w2.order, order)
    w2.write(6, data[order[6:]])
    out = w2.finalize()
    np.testing.assert_array_equal(np.asarray(out), data)  # stored in pool order
    assert cache.partial() is None and cache.meta()["order"] == {"seed": 5}
    assert not (cache.dir / "order.npy").exists()


def test_entry_started_before_encode_orders_resumes_in_pool_order(tmp_path: Path) -> None:
    """An unfinished entry of an older version (no order in its record) is read and resumed in pool order."""
    import json

    data = np.random.default_rng(2).standard_normal((10, 4)).astype(np.float32)
    cache = FeatureCache(tmp_path, {"old": True})
    w = cache.open_writer(10, 4)
    w.write(0, data[:4])
    del w
    record = json.loads((cache.dir / "progress.json").read_text())
    for key in ("order", "run"):
        record.pop(key)  # the record as the previous version wrote it
    (cache.dir / "progress.json").write_text(json.dumps(record))

    part = cache.partial()
    assert np.array_equal(part.rows, np.arange(4)) and part.status.seed is None and part.status.rate is None
    np.testing.assert_array_equal(part.features, data[:4])
    w2 = FeatureCache(tmp_path, {"old": True}).open_writer(10, 4, order_seed=0)
    assert w2.done == 4 and w2.seed is None
    w2.write(4, data[4:])
    np.testing.assert_array_equal(np.asarray(w2.finalize()), data)


def test_a_pool_order_writer_restarts_a_permuted_entry(tmp_path: Path) -> None:
    """The shard merge writes in pool order: it must not continue an entry started in another order."""
    cache = FeatureCache(tmp_path, {"a": 1})
    w = cache.open_writer(8, 2, order_seed=3)
    w.write(0, np.ones((4, 2), np.float32))
    del w
    again = cache.open_writer(8, 2, order_seed=None, keep_order=False)
    assert again.done == 0 and again.seed is None and np.array_equal(again.order, np.arange(8))
    assert np.array_equal(cache.partial().rows, np.arange(0))


def test_extracting_sees_the_lock_of_another_holder(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, {"a": 1})
    assert not cache.extracting()
    with cache.lock():
        assert FeatureCache(tmp_path, {"a": 1}).extracting()
    assert not cache.extracting()
