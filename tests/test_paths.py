"""Path safety: only paths inside the root resolve."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activekd_core.paths import PathOutsideRoot, is_inside, resolve_inside


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "img.png").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(tmp_path, root / "updir")
    os.symlink("a/b", root / "shortcut")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    return root


def test_plain_relative_paths_resolve(tree: Path) -> None:
    assert resolve_inside(tree, "a/b/img.png") == (tree / "a" / "b" / "img.png").resolve()
    assert resolve_inside(tree, Path("a") / "b" / "img.png", must_exist=True).is_file()
    assert resolve_inside(tree, "./a/b/img.png") == resolve_inside(tree, "a/b/img.png")
    assert resolve_inside(tree, "new/file.txt") == tree.resolve() / "new" / "file.txt"
    assert resolve_inside(tree, "shortcut/img.png") == (tree / "a" / "b" / "img.png").resolve()


@pytest.mark.parametrize(
    "bad,words",
    [
        ("../secret.txt", "'..'"),
        ("a/../../secret.txt", "'..'"),
        ("a/../a/b/img.png", "'..'"),  # even when it would come back inside
        ("a\\..\\..\\secret.txt", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("\\\\server\\share\\x", "absolute"),
        ("", "empty"),
        ("   ", "empty"),
        ("a/\0b", "NUL"),
        ("leak.txt", "symbolic link leads outside"),
        ("updir/secret.txt", "symbolic link leads outside"),
        ("loop1", "loop"),
    ],
)
def test_refused(tree: Path, bad: str, words: str) -> None:
    with pytest.raises(PathOutsideRoot) as info:
        resolve_inside(tree, bad)
    assert words.lower() in str(info.value).lower()
    assert isinstance(info.value, ValueError)
    assert info.value.root == tree.resolve()


def test_must_exist_and_missing_root(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        resolve_inside(tree, "a/missing.png", must_exist=True)
    with pytest.raises(FileNotFoundError, match="root folder not found"):
        resolve_inside(tmp_path / "nope", "x.png")


def test_is_inside(tree: Path, tmp_path: Path) -> None:
    assert is_inside(tree, tree / "a" / "b" / "img.png")
    assert not is_inside(tree, tree / "leak.txt")
    assert not is_inside(tree, tmp_path / "secret.txt")
    assert not is_inside(tmp_path / "missing", tree)
