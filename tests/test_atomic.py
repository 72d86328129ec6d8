"""The one atomic-write helper: readers see the old file or the new one, never a mix or a stray temp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activekd_core.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "labels.json"
    atomic_write_text(dest, "first")
    atomic_write_bytes(dest, b"second")
    assert dest.read_bytes() == b"second"
    assert [p.name for p in dest.parent.iterdir()] == ["labels.json"]


def test_atomic_path_keeps_old_content_when_the_writer_fails(tmp_path: Path) -> None:
    dest = tmp_path / "probs.npy"
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, np.arange(3))
    with pytest.raises(KeyError):
        with atomic_path(dest, suffix=".npy") as tmp:
            np.save(tmp, np.arange(5))
            raise KeyError("writer crashed")
    np.testing.assert_array_equal(np.load(dest), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["probs.npy"]
