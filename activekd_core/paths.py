"""Path safety: resolve user- or browser-supplied paths only inside a trusted root.

The app serves and reads files only from the image root and the project folder. Every
path that comes from outside (an image id in a URL or a form, a CSV row, a file name in a
project file) goes through :func:`resolve_inside` before it touches the file system.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


class PathOutsideRoot(ValueError):
    """A path would lead outside the folder it must stay in.

    Attributes:
        root: The folder the path had to stay inside.
        relative: The path as it was given.
        reason: Why it was refused.
    """

    def __init__(self, root: Path | str, relative: object, reason: str) -> None:
        super().__init__(f"refused path {relative!r} (must stay inside {root}): {reason}")
        self.root = Path(root)
        self.relative = relative
        self.reason = reason


def resolve_inside(root: Path | str, relative: str | os.PathLike[str], *, must_exist: bool = False) -> Path:
    """Join a relative path to ``root`` and check that the result stays inside it.

    Refused: empty paths, NUL bytes, absolute paths (POSIX ``/x``, Windows ``C:\\x`` or
    ``\\\\server\\share``), any ``..`` component (even one that would come back inside),
    and paths whose symbolic links resolve to somewhere outside ``root``. Symbolic links
    that stay inside ``root`` are allowed.

    Args:
        root: The trusted folder (it must exist).
        relative: The untrusted path, relative to ``root``; ``/`` separates components.
        must_exist: Also require the resolved path to exist.

    Returns:
        The resolved absolute path (symbolic links followed).

    Raises:
        PathOutsideRoot: If the path is refused (a ``ValueError``).
        FileNotFoundError: If ``root`` does not exist, or ``must_exist`` and the path
            does not.
    """
    root_path = Path(root)
    try:
        root_resolved = root_path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise FileNotFoundError(f"root folder not found: {root_path}") from exc
    text = os.fspath(relative)
    if not isinstance(text, str):
        raise PathOutsideRoot(root_resolved, relative, "path must be text")
    if text == "" or text.strip() == "":
        raise PathOutsideRoot(root_resolved, relative, "empty path")
    if "\0" in text:
        raise PathOutsideRoot(root_resolved, relative, "contains a NUL character")
    posix = PurePosixPath(text)
    windows = PureWindowsPath(text)
    if posix.is_absolute() or windows.drive or windows.root:
        raise PathOutsideRoot(root_resolved, relative, "absolute paths are not allowed")
    if ".." in posix.parts or ".." in windows.parts:
        raise PathOutsideRoot(root_resolved, relative, "'..' components are not allowed")
    candidate = root_resolved.joinpath(*posix.parts)
    try:
        resolved = candidate.resolve(strict=False)
    except RuntimeError as exc:  # symlink loop on older Pythons
        raise PathOutsideRoot(root_resolved, relative, "symbolic link loop") from exc
    except OSError as exc:
        raise PathOutsideRoot(root_resolved, relative, f"cannot be resolved: {exc}") from exc
    if not resolved.is_relative_to(root_resolved):
        raise PathOutsideRoot(root_resolved, relative, f"a symbolic link leads outside (to {resolved})")
    if must_exist and not resolved.exists():
        raise FileNotFoundError(f"no such file inside {root_resolved}: {text}")
    return resolved


def is_inside(root: Path | str, path: Path | str) -> bool:
    """Whether ``path`` (absolute, or relative to the working folder) resolves inside ``root``.

    Symbolic links are followed on both sides; a missing ``root`` gives ``False``.
    """
    try:
        root_resolved = Path(root).resolve(strict=True)
        resolved = Path(path).resolve(strict=False)
    except (OSError, RuntimeError):
        return False
    return resolved.is_relative_to(root_resolved)
