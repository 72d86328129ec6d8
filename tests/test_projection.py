"""Layouts: PCA, UMAP (in process and in the background worker), cache, subsets, ternary."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from activekd_core import layout_worker
from activekd_core import projection as pj


def dirichlet(n: int, c: int, seed: int = 0, alpha: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(c, alpha), n).astype(np.float32)


def test_ternary_xy_vertices_and_centre():
    xy = pj.ternary_xy(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]]))
    np.testing.assert_allclose(xy[:3], pj.TERNARY_VERTICES)
    np.testing.assert_allclose(xy[3], [0.5, math.sqrt(3) / 6])
    np.testing.assert_allclose(xy[4], [0.5, 0.0])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        pj.ternary_xy(np.eye(4))


def test_pca_layout_shapes_and_metrics():
    p = dirichlet(50, 4)
    e = pj.pca_layout(p)
    h = pj.pca_layout(p, "hellinger")
    assert e.shape == h.shape == (50, 2) and e.dtype == np.float32
    assert not np.allclose(e, h)
    # first PCA axis explains most variance: spread along x >= spread along y
    assert e[:, 0].std() >= e[:, 1].std()
    # degenerate shapes do not crash
    assert pj.pca_layout(np.array([[0.2, 0.8]])).shape == (1, 2)
    two = pj.pca_layout(dirichlet(10, 2))
    np.testing.assert_allclose(two[:, 1], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="negative"):
        pj.pca_layout(np.array([[-1.0, 2.0]]))


def test_layout_key_depends_on_content_params_not_dtype():
    p = dirichlet(30, 3)
    base = pj.layout_key(p, pj.LayoutParams())
    assert pj.layout_key(p.astype(np.float64), pj.LayoutParams()) == base
    assert pj.layout_key(p, pj.LayoutParams(n_neighbors=10)) != base
    assert pj.layout_key(p, pj.LayoutParams(metric="hellinger")) != base
    assert pj.layout_key(p, pj.LayoutParams(seed=1)) != base
    q = p.copy()
    q[0] = [1, 0, 0]
    assert pj.layout_key(q, pj.LayoutParams()) != base
    # PCA ignores UMAP-only parameters
    assert pj.layout_key(p, pj.LayoutParams("pca", n_neighbors=5)) == pj.layout_key(p, pj.LayoutParams("pca"))
    assert pj.layout_key(p, pj.LayoutParams(), base_key="ab") != base


def test_params_validation():
    with pytest.raises(ValueError, match="method"):
        pj.LayoutParams(method="tsne")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric"):
        pj.LayoutParams(metric="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_neighbors"):
        pj.LayoutParams(n_neighbors=1)


def test_cache_roundtrip_and_bad_files(tmp_path):
    p = dirichlet(40, 3)
    lay = pj.compute_layout(p, pj.LayoutParams("pca"), cache_dir=tmp_path)
    assert not lay.from_cache and lay.method_used == "pca"
    again = pj.compute_layout(p, pj.LayoutParams("pca"), cache_dir=tmp_path)
    assert again.from_cache
    np.testing.assert_array_equal(again.coords, lay.coords)
    assert again.params == lay.params
    npy, meta = pj.LayoutCache(tmp_path).paths(lay.key)
    assert npy.exists() and meta.exists()
    np.save(npy, np.zeros((3, 2), np.float32))  # wrong length -> ignored, recomputed
    assert pj.LayoutCache(tmp_path).load(lay.key) is None
    assert not pj.compute_layout(p, pj.LayoutParams("pca"), cache_dir=tmp_path).from_cache
    with pytest.raises(ValueError, match="invalid layout key"):
        pj.LayoutCache(tmp_path).paths("../x")


def test_display_subset_keeps_and_flags():
    full = pj.display_subset(100, 200)
    assert not full.subsampled and full.n_shown == 100
    keep = np.array([5, 999, 1234])
    sub = pj.display_subset(2000, 300, keep=keep, seed=3)
    assert sub.subsampled and sub.n_shown == 300 and sub.n_total == 2000
    assert set(keep) <= set(sub.indices.tolist())
    assert np.all(np.diff(sub.indices) > 0)
    np.testing.assert_array_equal(sub.indices, pj.display_subset(2000, 300, keep=keep, seed=3).indices)
    assert "300 of 2,000" in sub.caption()
    many = pj.display_subset(50, 10, keep=np.arange(20))
    assert many.n_shown == 20
    with pytest.raises(ValueError, match="keep index"):
        pj.display_subset(10, 5, keep=[10])


def test_umap_in_process_clusters_and_cache(tmp_path):
    # three well-separated corners of the simplex must stay separated in the layout
    rng = np.random.default_rng(0)
    corners = np.repeat(np.eye(3), 30, axis=0) * 0.9 + 0.1 / 3
    p = np.clip(corners + rng.normal(0, 0.01, corners.shape), 1e-4, None)
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    params = pj.LayoutParams(n_neighbors=10, seed=0)
    lay = pj.compute_layout(p, params, cache_dir=tmp_path)
    assert lay.method_used == "umap" and lay.coords.shape == (90, 2)
    labels = np.repeat(np.arange(3), 30)
    centres = np.stack([lay.coords[labels == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(lay.coords[labels == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread
    assert pj.transform_faithfulness(p, lay.coords) > 0.9
    assert pj.compute_layout(p, params, cache_dir=tmp_path).from_cache
    tiny = pj.compute_layout(p[:4], params)
    assert tiny.method_used == "pca" and "PCA" in tiny.note


@pytest.mark.slow
def test_layout_job_background(tmp_path):
    """Worker: pending PCA first, then UMAP; cache hit; transform; supersession; death."""
    p = dirichlet(120, 3, seed=1)
    q = dirichlet(120, 3, seed=2)
    params = pj.LayoutParams(n_neighbors=10, seed=0)
    job = layout_worker.LayoutJob(tmp_path, warm_metrics=())
    try:
        # three requests of one group before the worker has started: only the last runs
        keys = []
        for n_nb in (5, 6, 7):
            lay = job.request(p, pj.LayoutParams(n_neighbors=n_nb), group="teacher")
            assert lay.pending and lay.method_used == "pca" and lay.coords.shape == (120, 2)
            keys.append(lay.key)
        first = job.request(p, params)
        assert first.pending
        np.testing.assert_allclose(first.coords, pj.pca_layout(p))
        done = job.wait(first.key, timeout=900)
        assert done is not None and done.method_used == "umap" and not done.pending
        assert job.status(keys[0]).state == "superseded"
        assert job.status(keys[1]).state == "superseded"
        assert job.wait(keys[2], timeout=600) is not None
        assert job.is_warm
        # same result as an in-process fit with the same seed
        np.testing.assert_allclose(done.coords, pj.compute_layout(p, params).coords, atol=1e-4)
        hit = job.request(p, params)
        assert hit.from_cache and not hit.pending
        # place new probabilities on the existing map
        tr = job.request_transform(q, done)
        assert tr.pending
        tr_done = job.wait(tr.key, timeout=600)
        assert tr_done is not None and tr_done.method_used == "umap-transform"
        assert tr_done.meta["base_key"] == done.key
        assert 0.0 <= tr_done.meta["trust_transform"] <= 1.0
        # a transform onto a map the worker does not hold fails cleanly
        fake = pj.Layout(done.coords, params, "f" * 32, "umap")
        bad = job.request_transform(q, fake)
        assert job.wait(bad.key, timeout=600) is None
        assert "no fitted reducer" in job.status(bad.key).error
        assert "unavailable" in job.request_transform(q, fake).note
        # the worker dies while a layout is queued: the status turns failed, a new request restarts it
        big = dirichlet(3000, 10, seed=5)
        lay = job.request(big, params)
        job._proc.terminate()
        deadline = time.monotonic() + 30
        while job.status(lay.key).state in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job.status(lay.key).state == "failed" and "exited" in job.status(lay.key).error
        assert not job.worker_alive
        again = job.request(big, params, retry=True)
        assert again.pending and job.worker_alive
    finally:
        job.close()
    assert not job.worker_alive


def test_worker_does_not_rerun_the_callers_main_script(tmp_path):
    """Under ``streamlit run`` __main__ is the page; the spawn child must not re-execute it."""
    import subprocess
    import sys
    from pathlib import Path

    marker = tmp_path / "imports.txt"
    script = tmp_path / "page_like.py"
    script.write_text(
        "import numpy as np\n"
        f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
        "from activekd_core.layout_worker import LayoutJob\n"
        "if __name__ == '__main__':\n"
        f"    job = LayoutJob({str(tmp_path / 'cache')!r}, warm_metrics=())\n"
        "    lay = job.request(np.full((4, 3), 1 / 3, np.float32))  # 4 points: worker uses PCA, no numba\n"
        "    done = job.wait(lay.key, timeout=300)\n"
        "    job.close()\n"
        "    print('OK' if done is not None and done.method_used == 'pca' else 'FAIL')\n"
    )
    root = Path(pj.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip().endswith("OK"), out.stderr[-2000:]
    assert marker.read_text().split() == ["__main__"]


def test_process_exits_with_a_large_request_queued_for_a_busy_worker(tmp_path):
    """A server or test run that ends while the worker has not read a large request must still exit.

    Before the fix the probabilities travelled through the request queue; an item larger than
    the pipe buffer left the queue's feeder thread blocked and ``multiprocessing``'s exit hook
    joined it forever (the test suite printed "passed" and never exited).
    """
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "leaves_a_job_open.py"
    script.write_text(
        "import numpy as np\n"
        "from activekd_core.layout_worker import LayoutJob\n"
        "if __name__ == '__main__':\n"
        f"    job = LayoutJob({str(tmp_path / 'cache')!r}, warm_metrics=('euclidean',))\n"
        "    rng = np.random.default_rng(0)\n"
        "    p = rng.dirichlet(np.ones(10), size=50_000).astype(np.float32)  # 2 MB, far above a pipe buffer\n"
        "    lay = job.request(p)\n"
        "    assert lay.pending\n"
        "    print('LEAVING', flush=True)\n"  # no close(): exit with the request unread
    )
    root = Path(pj.__file__).resolve().parents[1]
    try:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, timeout=120,
                             env={**__import__("os").environ, "PYTHONPATH": str(root)})
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit with a layout request still queued: {exc}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "LEAVING"
