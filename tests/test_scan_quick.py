"""The scan's quick PNG path: same results as the full Pillow check, confined opens, read-ahead.

A scan reads a plainly laid out PNG file whole and checks it in memory
(:mod:`activekd_core.png_check`); every other file, and every PNG that check does not
accept, goes through Pillow as before. These tests pin that the quick path changes no
result (ids, sizes, file stats, skipped files and their reasons) on a folder of good,
damaged, odd, symlinked and nested files, that it never accepts what Pillow refuses, and
that a folder swapped for a link after the listing is not read through.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core import image_open, image_scan
from activekd_core.images import scan_images
from activekd_core.png_check import sound_png_size

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hostile_inputs import build_zoo, png_bytes, png_chunk  # noqa: E402

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def raw_png(ihdr: bytes, *chunks: tuple[bytes, bytes]) -> bytes:
    """A PNG from an IHDR body and further (name, data) chunks, each with a correct CRC."""
    return SIGNATURE + png_chunk(b"IHDR", ihdr) + b"".join(png_chunk(k, d) for k, d in chunks)


def ihdr(width: int, height: int, depth: int = 8, color: int = 2, filt: int = 0, interlace: int = 0) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, color, 0, filt, interlace)


def pillow_verdict(data: bytes, max_pixels: int = 64_000_000) -> tuple[int, int] | None:
    """What the full check (Pillow's open + verify) says: the size, or None when refused."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as img:
            size = img.size
            if size[0] * size[1] > max_pixels:
                return None
            img.verify()
    except Exception:  # noqa: BLE001 - any refusal
        return None
    return size


def sample_pngs() -> dict[str, bytes]:
    """Valid PNG files of many layouts, as Pillow writes them and by hand."""
    rng = np.random.default_rng(0)
    out = {
        "rgb": png_bytes(Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))),
        "rgba": png_bytes(Image.fromarray(rng.integers(0, 256, (5, 4, 4), dtype=np.uint8), "RGBA")),
        "gray": png_bytes(Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8), "L")),
        "gray16": png_bytes(Image.fromarray(rng.integers(0, 65535, (6, 7), dtype=np.uint16))),
        "bilevel": png_bytes(Image.new("1", (17, 3), 1)),
        "palette": png_bytes(Image.new("P", (8, 8), 3)),
        "palette_transparent": png_bytes(Image.new("P", (8, 8), 0), transparency=0),
        "optimized": png_bytes(Image.new("RGB", (64, 64), (9, 9, 9)), optimize=True),
        "with_text": png_bytes(Image.new("RGB", (4, 4)), pnginfo=_text_info()),
        "with_dpi": png_bytes(Image.new("RGB", (4, 4)), dpi=(300, 300)),
        "split_idat": raw_png(ihdr(2, 2), (b"IDAT", zlib.compress(b"\0" * 14)[:5]),
                              (b"IDAT", zlib.compress(b"\0" * 14)[5:]), (b"IEND", b"")),
        "text_after_pixels": raw_png(ihdr(2, 2), (b"IDAT", zlib.compress(b"\0" * 14)), (b"tEXt", b"k\0v"),
                                     (b"IEND", b"")),
        "trailing_bytes": raw_png(ihdr(2, 2), (b"IDAT", zlib.compress(b"\0" * 14)), (b"IEND", b"")) + b"junk" * 9,
        "interlaced_hand": raw_png(ihdr(3, 3, interlace=1), (b"IDAT", zlib.compress(b"\0" * 40)), (b"IEND", b"")),
    }
    return out


def _text_info():  # type: ignore[no-untyped-def]
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("comment", "hello")
    return info


def damaged_pngs() -> dict[str, bytes]:
    """PNG files Pillow refuses, or accepts only through its own chunk handlers."""
    idat = (b"IDAT", zlib.compress(b"\0" * 14))
    good = raw_png(ihdr(2, 2), idat, (b"IEND", b""))
    bad_crc = bytearray(good)
    bad_crc[-13] ^= 0xFF  # a byte of the IDAT chunk's CRC
    return {
        "bad_idat_crc": bytes(bad_crc),
        "bad_ihdr_crc": good[:29] + b"\0\0\0\0" + good[33:],
        "truncated_before_iend": good[:-12],
        "truncated_mid_idat": good[:45],
        "no_idat": raw_png(ihdr(2, 2), (b"IEND", b"")),
        "zero_width": raw_png(ihdr(0, 2), idat, (b"IEND", b"")),
        "bad_filter_method": raw_png(ihdr(2, 2, filt=1), idat, (b"IEND", b"")),
        "bad_mode": raw_png(ihdr(2, 2, depth=3, color=2), idat, (b"IEND", b"")),
        "bad_chunk_name": raw_png(ihdr(2, 2), idat, (b"I-AT", b"x"), (b"IEND", b"")),
        "short_ihdr": SIGNATURE + png_chunk(b"IHDR", ihdr(2, 2)[:10]) + png_chunk(*idat) + png_chunk(b"IEND", b""),
        "gamma_before_pixels": raw_png(ihdr(2, 2), (b"gAMA", b"\0\0"), idat, (b"IEND", b"")),
        "huge_chunk_length": good[:33] + struct.pack(">I", 2**31) + good[37:],
        "dicom_marker": raw_png(ihdr(2, 2), idat, (b"tEXt", b"x" * 80), (b"IEND", b"")),
    }


def test_quick_check_agrees_with_pillow_on_valid_files() -> None:
    for name, data in sample_pngs().items():
        quick = sound_png_size(data, 64_000_000)
        assert pillow_verdict(data) is not None, name
        assert quick is None or quick == pillow_verdict(data), name
    # the plain layouts Pillow writes are accepted by the quick path (it is not a no-op)
    for name in ("rgb", "rgba", "gray", "gray16", "bilevel", "palette", "optimized", "split_idat", "text_after_pixels",
                 "trailing_bytes", "interlaced_hand"):
        assert sound_png_size(sample_pngs()[name], 64_000_000) == pillow_verdict(sample_pngs()[name]), name


def test_quick_check_never_accepts_what_pillow_refuses() -> None:
    for name, data in damaged_pngs().items():
        if pillow_verdict(data) is None:
            assert sound_png_size(data, 64_000_000) is None, name
    assert sound_png_size(raw_png(ihdr(300, 300), (b"IDAT", b"x"), (b"IEND", b"")), 300 * 299) is None  # over the limit


def test_quick_check_on_random_damage_is_a_subset_of_pillow() -> None:
    """Seeded random byte flips, truncations and insertions: whenever the quick check
    accepts a file, Pillow accepts it too, with the same size."""
    rng = np.random.default_rng(7)
    bases = list(sample_pngs().values())
    accepted = 0
    for trial in range(900):
        data = bytearray(bases[trial % len(bases)])
        kind = trial % 3
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            del data[int(rng.integers(8, len(data))):]
        else:
            at = int(rng.integers(8, len(data)))
            data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        quick = sound_png_size(bytes(data), 64_000_000)
        if quick is not None:
            accepted += 1
            assert quick == pillow_verdict(bytes(data)), f"trial {trial}"
    assert accepted > 0  # some damage lands in bytes no check covers (e.g. trailing data, IEND's CRC)


def build_png_zoo(root: Path) -> None:
    """The hostile zoo plus PNG files of every layout above, valid and damaged, some nested."""
    build_zoo(root)
    (root / "nested" / "deeper").mkdir(parents=True)
    for name, data in sample_pngs().items():
        (root / "nested" / f"{name}.png").write_bytes(data)
    for name, data in damaged_pngs().items():
        (root / "nested" / "deeper" / f"{name}.png").write_bytes(data)
    dicom_like = bytearray(damaged_pngs()["dicom_marker"])
    dicom_like[128:132] = b"DICM"  # inside the text chunk: its CRC no longer matches, and the sniff says DICOM
    (root / "nested" / "dicm_at_128.png").write_bytes(bytes(dicom_like))
    (root / "nested" / "UPPER.PNG").write_bytes(sample_pngs()["rgb"])
    (root / "nested" / ".png").write_bytes(sample_pngs()["rgb"])  # no suffix (a dot file): not DICOM, ignored
    buf = io.BytesIO()
    Image.new("RGB", (5, 5)).save(buf, "TIFF")
    (root / "nested" / "tiff_named.png").write_bytes(buf.getvalue())
    os.symlink("../one_pixel.png", root / "nested" / "link_to_good.png")
    os.symlink("deeper/bad_idat_crc.png", root / "nested" / "link_to_bad.png")


def pool_facts(pool) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "ids": list(pool.ids),
        "problems": [(p.id, str(p.path), p.reason) for p in pool.problems],
        "sizes": dict(pool._sizes),
        "stats": dict(pool._stats),
        "items": dict(pool._items),
        "fingerprint": pool.fingerprint(),
    }


@pytest.mark.parametrize("non_utf8_names", ["skip", "keep"])
def test_scan_results_are_the_same_with_and_without_the_quick_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, non_utf8_names: str
) -> None:
    root = tmp_path / "zoo"
    build_png_zoo(root)
    calls: list[tuple[int, int] | None] = []

    def counted(data: bytes, max_pixels: int) -> tuple[int, int] | None:
        calls.append(sound_png_size(data, max_pixels))
        return calls[-1]

    monkeypatch.setattr(image_scan, "sound_png_size", counted)
    quick = pool_facts(scan_images(root, non_utf8_names=non_utf8_names))
    assert sum(c is not None for c in calls) >= 15  # the plain PNG files went the quick way
    monkeypatch.setattr(image_scan, "sound_png_size", lambda data, max_pixels: None)
    full = pool_facts(scan_images(root, non_utf8_names=non_utf8_names))
    assert quick == full
    reasons = {pid: reason for pid, _, reason in quick["problems"]}  # type: ignore[misc]
    assert "broken PNG file" in reasons["nested/deeper/bad_idat_crc.png"]
    assert "broken PNG file" in reasons["nested/link_to_bad.png"]
    assert "nested/link_to_good.png" in quick["ids"]  # type: ignore[operator]
    assert "nested/dicm_at_128.png" in reasons  # sniffed as DICOM, refused by the DICOM reader
    assert quick["sizes"]["nested/rgb.png"] == (13, 9)  # type: ignore[index]
    assert quick["sizes"]["nested/UPPER.PNG"] == (13, 9)  # type: ignore[index]
    assert "nested/.png" not in quick["ids"] and "nested/.png" not in reasons  # type: ignore[operator]


def test_scan_read_ahead_path_gives_the_same_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks so that a small folder takes the threaded read-ahead path too."""
    root = tmp_path / "zoo"
    build_png_zoo(root)
    inline = pool_facts(scan_images(root))
    monkeypatch.setattr(image_scan, "_QUICK_CHUNK", 2)
    monkeypatch.setattr(image_scan, "_READ_AHEAD_CHUNKS", 3)
    assert pool_facts(scan_images(root)) == inline


def test_scan_never_reads_through_a_folder_swapped_for_a_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder holding a listed file becomes a link to outside the root just before the
    scan opens the file: the file opened there is refused, nothing outside is used."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "sub" / "x.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "y.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (9, 9), (200, 0, 0)).save(outside / "x.png")
    real_open = image_open._os_open

    def swap_folder(path, flags):  # type: ignore[no-untyped-def]
        if str(path).endswith("/sub/x.png") and not (root / "sub").is_symlink():
            (root / "sub").rename(tmp_path / "old_sub")
            (root / "sub").symlink_to(outside, target_is_directory=True)
        return real_open(path, flags)

    monkeypatch.setattr(image_open, "_os_open", swap_folder)
    pool = scan_images(root)
    assert pool.ids == ["y.png"]
    assert [p.id for p in pool.problems] == ["sub/x.png"]
    assert "outside" in pool.problems[0].reason
    assert "sub/x.png" not in pool._sizes
