"""Items inside one file: a DICOM frame or a raster chip, and their ids.

A pool row is usually one file, named by its id (the POSIX path relative to the image
root). Some files hold several items:

* a multi-frame DICOM read with ``frames="each"``: one item per frame, id
  ``"<file id>#<frame>"`` with the frame numbered **from 1** as DICOM and viewers number
  them (``"ct/series1.dcm#12"`` is the twelfth frame);
* a large raster cut into chips: one item per window, id ``"<file id>@x,y,w,h"`` in pixels
  of the full-resolution image (``"s2/T32TNS.tif@512,0,512,512"``).

A single-frame file, a multi-frame file shown by its middle frame and an unchipped raster
keep the plain file id. Because file names may themselves contain ``#`` or ``@``,
:func:`split_item_id` takes a predicate saying which ids are files and checks the whole
id first; callers that keep the :class:`ItemRef` (file id + frame/window) next to the
item id never need to parse ids at all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

Source = Path | str | BinaryIO  # a file path, or a binary file already opened (e.g. confined to the image root)


@contextmanager
def opened_source(source: Source) -> Iterator[BinaryIO]:
    """A binary file for ``source``: opened (and closed) here for a path, else rewound and left open."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            yield fh
    else:
        source.seek(0)
        yield source

_FRAME_SUFFIX = re.compile(r"#([1-9][0-9]{0,8})\Z")
_CHIP_SUFFIX = re.compile(r"@([0-9]{1,9}),([0-9]{1,9}),([1-9][0-9]{0,8}),([1-9][0-9]{0,8})\Z")


@dataclass(frozen=True)
class ItemRef:
    """One item of a file: the whole file, one DICOM frame, or one raster window.

    Attributes:
        file_id: The file's id (path relative to the image root).
        frame: 0-based frame index to read, or None (the file decides: its only frame,
            or the middle one).
        window: ``(x, y, width, height)`` in full-resolution pixels, or None (whole image).
        id_frame: Whether the frame is part of the item id (``frames="each"``). A
            middle-frame item reads a frame but keeps the plain file id.
    """

    file_id: str
    frame: int | None = None
    window: tuple[int, int, int, int] | None = None
    id_frame: bool = True

    def __post_init__(self) -> None:
        if self.frame is not None and self.window is not None:
            raise ValueError("an item is a frame or a window, not both")
        if self.frame is not None and self.frame < 0:
            raise ValueError(f"frame index must be >= 0, got {self.frame}")
        if self.window is not None:
            x, y, w, h = self.window
            if x < 0 or y < 0 or w < 1 or h < 1:
                raise ValueError(f"invalid window {self.window}")

    @property
    def item_id(self) -> str:
        """The id stored for this item (see the module docstring)."""
        if self.window is not None:
            return chip_id(self.file_id, *self.window)
        if self.frame is not None and self.id_frame:
            return frame_id(self.file_id, self.frame)
        return self.file_id


def frame_id(file_id: str, frame_index: int) -> str:
    """Id of a frame, given its 0-based index (the id shows it 1-based)."""
    return f"{file_id}#{frame_index + 1}"


def chip_id(file_id: str, x: int, y: int, w: int, h: int) -> str:
    """Id of a raster window ``(x, y, w, h)``."""
    return f"{file_id}@{x},{y},{w},{h}"


def split_item_id(item_id: str, is_file: Callable[[str], bool] | None = None) -> ItemRef:
    """Turn an item id back into an :class:`ItemRef`.

    Args:
        item_id: An id made by :attr:`ItemRef.item_id`.
        is_file: Says whether an id names an existing file (e.g.
            ``lambda i: (root / i).is_file()``). When given and the whole ``item_id`` is a
            file, it is that file (a file really named ``scan#2``); a suffix is only split
            off when the remaining id is a file. When None, any well-formed suffix is split.

    Returns:
        The item reference (frame indices 0-based).
    """
    if is_file is not None and is_file(item_id):
        return ItemRef(item_id)
    match = _FRAME_SUFFIX.search(item_id)
    if match is not None:
        base = item_id[: match.start()]
        if is_file is None or is_file(base):
            return ItemRef(base, frame=int(match.group(1)) - 1)
    match = _CHIP_SUFFIX.search(item_id)
    if match is not None:
        base = item_id[: match.start()]
        if is_file is None or is_file(base):
            x, y, w, h = (int(g) for g in match.groups())
            return ItemRef(base, window=(x, y, w, h))
    return ItemRef(item_id)


def chip_windows(width: int, height: int, size: int, overlap: int = 0) -> list[tuple[int, int, int, int]]:
    """Square windows covering an image, row by row.

    Windows start every ``size - overlap`` pixels; when the last step does not reach the
    image's edge one more window is aligned to that edge, so every pixel is covered and
    every window is ``size`` pixels wide and high (smaller only when the image itself is).

    Args:
        width: Image width.
        height: Image height.
        size: Window side (> 0).
        overlap: Pixels neighbouring windows share (0 <= overlap < size).

    Returns:
        ``(x, y, w, h)`` tuples, ordered by y then x.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    if width < 1 or height < 1:
        return []
    xs = _starts(width, size, size - overlap)
    ys = _starts(height, size, size - overlap)
    return [(x, y, min(size, width), min(size, height)) for y in ys for x in xs]


def _starts(extent: int, size: int, step: int) -> list[int]:
    if extent <= size:
        return [0]
    starts = list(range(0, extent - size + 1, step))
    if starts[-1] + size < extent:
        starts.append(extent - size)
    return starts
