"""DICOM reading: detection, bounded checks, the display pipeline, and no patient data out."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space, pixel_array
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MPEG2MPML,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from activekd_core import dicom_header, dicom_images, dicom_pixels
from activekd_core.dicom_images import (
    dicom_items,
    inspect_dicom,
    is_dicom,
    read_dicom_rgb,
    read_technical_header,
    technical_tags,
    transfer_syntax_problem,
)
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_formats import read_display_rgb, scan_entries, sniff_format
from activekd_core.images import ImageLoadError

# Distinctive values that must never leave the reader. The long name component (> 64
# characters) would make pydicom's value validation warn, quoting it, if it were decoded.
PATIENT_NAME = "Quxbrandt^Zelphinia" + "x" * 60
PATIENT_ID = "PID-QX-7313"
BIRTH_DATE = "19230405"
SECRETS = ("Quxbrandt", "Zelphinia", PATIENT_ID, BIRTH_DATE, "Hospital of Snorkvale")


def _testdata(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled in this pydicom wheel")
    return str(path)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "CT",
    sop_class: str = CTImageStorage,
    bits_stored: int | None = None,
    **tags: object,
) -> Path:
    """A DICOM Part 10 file written by pydicom, with patient data to leak-test against."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.InstitutionName = "Hospital of Snorkvale"
    ds.Modality = modality
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits)
    for key, value in tags.items():
        setattr(ds, key, value)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def ct_pixels() -> np.ndarray:
    """Stored values (slope 1, intercept -1024): 40 HU, air (-1000 HU), bone (1000 HU) bands."""
    arr = np.zeros((30, 20), dtype=np.int16)
    arr[0:10] = 40 + 1024
    arr[10:20] = -1000 + 1024
    arr[20:30] = 1000 + 1024
    return arr


@pytest.fixture()
def ct_file(tmp_path: Path) -> Path:
    return write_dicom(
        tmp_path / "ct.dcm", ct_pixels(), RescaleSlope=1, RescaleIntercept=-1024,
        WindowCenter=[40, -600], WindowWidth=[400, 1500],
    )


# ----------------------------------------------------------------------------- detection
def test_detected_by_content_without_extension(tmp_path: Path, ct_file: Path) -> None:
    bare = tmp_path / "1.2.840.113619.2.55.3.12"
    bare.write_bytes(ct_file.read_bytes())
    assert is_dicom(bare)
    assert sniff_format(bare) == "dicom"
    png_named = tmp_path / "scan.png"
    png_named.write_bytes(ct_file.read_bytes())
    assert sniff_format(png_named) == "dicom"
    text = tmp_path / "notes"
    text.write_bytes(b"x" * 200)
    assert not is_dicom(text)
    assert sniff_format(text) == "other"
    with open(bare, "rb") as fh:  # a file object from a confined opener works the same
        assert is_dicom(fh)
        assert read_display_rgb(fh, None, DisplayRecipe(), name="bare").shape == (30, 20, 3)


def test_dicomdir_is_refused_with_reason() -> None:
    path = _testdata("DICOMDIR")
    assert is_dicom(path)
    with pytest.raises(ImageLoadError, match="DICOMDIR"):
        inspect_dicom(path)


def test_dcm_suffix_without_preamble_is_reported() -> None:
    with pytest.raises(ImageLoadError, match="DICM"):
        inspect_dicom(_testdata("no_meta.dcm"))


# ----------------------------------------------------------------------------- pixel pipeline
def test_ct_soft_tissue_window_exact_values(ct_file: Path) -> None:
    rgb = read_dicom_rgb(ct_file, DisplayRecipe(window="ct_soft_tissue"))
    assert rgb.shape == (30, 20, 3) and rgb.dtype == np.uint8
    assert (rgb[0:10] == 128).all()  # 40 HU at the centre of 40/400: ((40 - 39.5) / 399 + 0.5) * 255 = 127.8
    assert (rgb[10:20] == 0).all()  # air is black
    assert (rgb[20:30] == 255).all()  # bone is above the window


def test_rescale_slope_is_applied(tmp_path: Path) -> None:
    stored = np.full((4, 4), (40 + 1024) // 2, dtype=np.int16)  # 532 * 2 - 1024 = 40 HU
    path = write_dicom(tmp_path / "s2.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024)
    assert (read_dicom_rgb(path, DisplayRecipe(window="ct_soft_tissue")) == 128).all()
    path1 = write_dicom(tmp_path / "s1.dcm", stored, RescaleSlope=1, RescaleIntercept=-1024)  # -492 HU: black
    assert (read_dicom_rgb(path1, DisplayRecipe(window="ct_soft_tissue")) == 0).all()


def test_header_window_uses_first_value(ct_file: Path) -> None:
    rgb = read_dicom_rgb(ct_file, DisplayRecipe())  # auto: header has [40, -600] / [400, 1500]
    assert (rgb[0:10] == 128).all()  # 40/400, not the lung window (which gives 236 at 40 HU)
    lung = read_dicom_rgb(ct_file, DisplayRecipe(window="ct_lung"))
    assert (lung[0:10] == 236).all()


def test_manual_window_and_presets_differ(ct_file: Path) -> None:
    brain = read_dicom_rgb(ct_file, DisplayRecipe(window="ct_brain"))
    manual = read_dicom_rgb(ct_file, DisplayRecipe(window="manual", window_center=40, window_width=80))
    assert np.array_equal(brain, manual)
    bone = read_dicom_rgb(ct_file, DisplayRecipe(window="ct_bone"))
    # 1000 HU in 400/1800: ((1000 - 399.5) / 1799 + 0.5) * 255 = 212.6
    assert (bone[20:30] == 213).all()


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "m1.dcm", ct_pixels(), photometric="MONOCHROME1", RescaleSlope=1, RescaleIntercept=-1024
    )
    rgb = read_dicom_rgb(path, DisplayRecipe(window="ct_soft_tissue"))
    assert (rgb[0:10] == 127).all()  # 255 - 128
    assert (rgb[10:20] == 255).all()  # air is white
    assert (rgb[20:30] == 0).all()


def test_voi_lut_function_sigmoid_from_header(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "sig.dcm", ct_pixels(), RescaleSlope=1, RescaleIntercept=-1024,
        WindowCenter=40, WindowWidth=400, VOILUTFunction="SIGMOID",
    )
    rgb = read_dicom_rgb(path, DisplayRecipe())
    assert (rgb[0:10] == 128).all()  # 255 / (1 + e^0) = 127.5 -> 128
    assert (rgb[10:20, :, 0] == round(255 / (1 + np.exp(-4 * (-1040) / 400)))).all()


def test_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [4, 0, 16])  # LUTDescriptor: 4 entries from 0, 16 bits
    item.add_new(0x00283006, "US", [0, 1000, 3000, 4000])  # LUTData
    arr = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "lut.dcm", arr, modality="OT", sop_class=SecondaryCaptureImageStorage,
        VOILUTSequence=[item], WindowCenter=0, WindowWidth=2,  # the LUT wins over the window
    )
    grey = read_dicom_rgb(path, DisplayRecipe())[:, :, 0]
    assert grey.tolist() == [[0, 64], [191, 255]]  # the table's 0..4000 output range becomes 0..255
    forced = read_dicom_rgb(path, DisplayRecipe(window="manual", window_center=1.5, window_width=4))[:, :, 0]
    # DICOM LINEAR with c=1.5, w=4: ((x - 1) / 3 + 0.5) * 255 -> 42.5, 127.5, 212.5 (half to even), 3 > 2.5 -> 255
    assert forced.tolist() == [[42, 128], [212, 255]]  # a chosen window overrides the file's LUT


def test_enhanced_multiframe_functional_groups(tmp_path: Path) -> None:
    frames = np.full((2, 4, 4), 40 + 1024, dtype=np.int16)

    def group(**values: object) -> Dataset:
        ds = Dataset()
        for key, value in values.items():
            setattr(ds, key, value)
        return ds

    shared = group(PixelValueTransformationSequence=[group(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")])
    per_frame = [
        group(FrameVOILUTSequence=[group(WindowCenter=40, WindowWidth=400)]),
        group(FrameVOILUTSequence=[group(WindowCenter=-600, WindowWidth=1500)]),
    ]
    path = write_dicom(
        tmp_path / "enh.dcm", frames, SharedFunctionalGroupsSequence=[shared], PerFrameFunctionalGroupsSequence=per_frame
    )
    assert (read_dicom_rgb(path, DisplayRecipe(), frame=0) == 128).all()  # 40 HU in 40/400
    assert (read_dicom_rgb(path, DisplayRecipe(), frame=1) == 236).all()  # 40 HU in -600/1500


def test_no_window_falls_back_to_min_max(tmp_path: Path) -> None:
    arr = np.array([[100, 200], [300, 500]], dtype=np.uint16)
    path = write_dicom(tmp_path / "mm.dcm", arr, modality="OT", sop_class=SecondaryCaptureImageStorage)
    grey = read_dicom_rgb(path, DisplayRecipe())[:, :, 0]
    assert grey.tolist() == [[0, 64], [128, 255]]


def test_multi_frame_items_and_frames(tmp_path: Path) -> None:
    frames = np.stack([np.full((6, 5), 100 * k, dtype=np.uint16) for k in range(5)])
    path = write_dicom(
        tmp_path / "mf.dcm", frames, modality="OT", sop_class=SecondaryCaptureImageStorage,
        WindowCenter=200, WindowWidth=400,
    )
    info = inspect_dicom(path)
    assert info.n_frames == 5
    each = dicom_items("series/mf.dcm", info, DisplayRecipe(frames="each"))
    assert [i.item_id for i in each] == [f"series/mf.dcm#{k}" for k in range(1, 6)]
    middle = dicom_items("series/mf.dcm", info, DisplayRecipe(frames="middle"))
    assert [(i.item_id, i.frame) for i in middle] == [("series/mf.dcm", 2)]
    # Frame values 0..400 through window 200/400: 0 -> 0, 200 -> 128, 400 -> 255.
    assert (read_dicom_rgb(path, DisplayRecipe(), frame=0) == 0).all()
    assert (read_dicom_rgb(path, DisplayRecipe()) == 128).all()  # middle frame by default
    assert (read_dicom_rgb(path, DisplayRecipe(), frame=4) == 255).all()
    assert [i.item_id for i in scan_entries(path, "mf", DisplayRecipe(frames="each"))][-1] == "mf#5"
    with pytest.raises(ImageLoadError, match="frame 6 does not exist"):
        read_dicom_rgb(path, DisplayRecipe(), frame=5)


def test_rgb_file_exact(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[:, :3] = (200, 30, 10)
    rgb[:, 3:] = (5, 90, 250)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", modality="OT", sop_class=SecondaryCaptureImageStorage)
    assert np.array_equal(read_dicom_rgb(path, DisplayRecipe(window="ct_bone")), rgb)  # windows do not touch colour


def test_ybr_full_file_is_converted_to_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[:, :3] = (200, 30, 10)
    rgb[:, 3:] = (5, 90, 250)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    assert not np.allclose(ybr, rgb, atol=20)
    path = write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL", modality="OT", sop_class=SecondaryCaptureImageStorage)
    out = read_dicom_rgb(path, DisplayRecipe()).astype(int)
    assert np.abs(out - rgb.astype(int)).max() <= 2


# ----------------------------------------------------------------------------- real files
def test_real_ct_small_matches_formula() -> None:
    path = _testdata("CT_small.dcm")
    header = pydicom.dcmread(path)
    hu = header.pixel_array.astype(np.float64) * float(header.RescaleSlope) + float(header.RescaleIntercept)
    expected = np.where(
        hu <= 39.5 - 199.5, 0.0, np.where(hu > 39.5 + 199.5, 255.0, ((hu - 39.5) / 399 + 0.5) * 255)
    )
    out = read_dicom_rgb(path, DisplayRecipe(window="ct_soft_tissue"))
    assert np.array_equal(out[:, :, 0], np.rint(expected).astype(np.uint8))
    assert technical_tags(read_technical_header(path))["Modality"] == "CT"


@pytest.mark.parametrize(
    "variant",
    ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"],
)
def test_lossless_variants_decode_identically(variant: str) -> None:
    reference = read_dicom_rgb(_testdata("MR_small.dcm"), DisplayRecipe())
    assert reference.std() > 10  # a real image, windowed by its header (600/1600)
    assert np.array_equal(read_dicom_rgb(_testdata(variant), DisplayRecipe()), reference)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("JPEG2000.dcm", (1024, 256, 3)),
        ("JPGExtended.dcm", (1024, 256, 3)),
        ("JPEGLSNearLossless_16.dcm", (50, 10, 3)),
        ("693_J2KI.dcm", (512, 512, 3)),
        ("SC_rgb_rle_2frame.dcm", (100, 100, 3)),
        ("examples_palette.dcm", (350, 800, 3)),
        ("SC_ybr_full_422_uncompressed.dcm", (100, 100, 3)),
    ],
)
def test_compressed_and_colour_real_files_decode(name: str, shape: tuple[int, int, int]) -> None:
    out = read_dicom_rgb(_testdata(name), DisplayRecipe())
    assert out.shape == shape and out.dtype == np.uint8
    assert out.max() > out.min()


def test_jpeg_baseline_multiframe_ybr_decodes_one_frame() -> None:
    path = _testdata("examples_ybr_color.dcm")
    assert inspect_dicom(path).n_frames == 30
    for frame in (0, 29):
        expected = pixel_array(path, index=frame)  # pydicom converts YBR to RGB
        assert np.array_equal(read_dicom_rgb(path, DisplayRecipe(), frame=frame), expected)


def test_max_side_shrinks_keeping_aspect() -> None:
    out = read_dicom_rgb(_testdata("JPEG2000.dcm"), DisplayRecipe(), max_side=128)
    assert out.shape == (128, 32, 3)


# ----------------------------------------------------------------------------- bad input
def test_unsupported_transfer_syntax_says_why(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "v.dcm", np.zeros((4, 4), dtype=np.uint8), modality="OT", sop_class=SecondaryCaptureImageStorage)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 12])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="MPEG2.*no decoder"):
        inspect_dicom(path)


def test_missing_plugin_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"]

    monkeypatch.setattr(dicom_header, "get_decoder", lambda uid: Unavailable())
    message = transfer_syntax_problem("1.2.840.10008.1.2.4.80")
    assert message is not None
    assert "JPEG-LS Lossless" in message and "pylibjpeg-libjpeg" in message and "install" in message
    with pytest.raises(ImageLoadError, match="pylibjpeg-libjpeg"):
        inspect_dicom(_testdata("MR_small_jpeg_ls_lossless.dcm"))


def test_truncated_file(tmp_path: Path, ct_file: Path) -> None:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(ct_file.read_bytes()[:-100])
    with pytest.raises(ImageLoadError, match="truncated"):
        inspect_dicom(cut)
    with pytest.raises(ImageLoadError, match="truncated"):
        inspect_dicom(_testdata("MR_truncated.dcm"))


def test_missing_pixel_data(tmp_path: Path, ct_file: Path) -> None:
    ds = pydicom.dcmread(ct_file)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="no pixel data"):
        inspect_dicom(tmp_path / "nopix.dcm")
    with pytest.raises(ImageLoadError, match="not a DICOM image"):
        inspect_dicom(_testdata("rtplan.dcm"))


def test_bits_allocated_disagreeing_with_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "b.dcm", np.zeros((8, 8), dtype=np.uint8), modality="OT", sop_class=SecondaryCaptureImageStorage)
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15  # the data holds 8-bit samples
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="BitsAllocated"):
        inspect_dicom(path)


def test_too_many_frames_refused_before_decoding(tmp_path: Path) -> None:
    frames = np.zeros((3000, 2, 2), dtype=np.uint8)
    path = write_dicom(tmp_path / "many.dcm", frames, modality="OT", sop_class=SecondaryCaptureImageStorage)
    with pytest.raises(ImageLoadError, match="too many frames: 3,000"):
        inspect_dicom(path)
    assert inspect_dicom(path, max_frames=5000).n_frames == 3000
    with pytest.raises(ImageLoadError, match="pixels per frame"):
        read_dicom_rgb(path, DisplayRecipe(), max_frames=5000, max_pixels=3)


# ----------------------------------------------------------------------------- patient data
def _broken_copies(tmp_path: Path, ct_file: Path) -> list[Path]:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(ct_file.read_bytes()[:-50])
    nopix = pydicom.dcmread(ct_file)
    del nopix.PixelData
    nopix.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    return [cut, tmp_path / "nopix.dcm"]


def _all_outputs(ct_file: Path, broken: list[Path]) -> list[str]:
    """Run every public entry point (and the error paths) and collect what they say."""
    outputs: list[str] = []
    recipe = DisplayRecipe(frames="each")
    outputs.append(repr(inspect_dicom(ct_file)))
    header = read_technical_header(ct_file)
    outputs.append(repr(technical_tags(header)))
    outputs.append(repr(scan_entries(ct_file, "p/ct.dcm", recipe)))
    outputs.append(repr(read_dicom_rgb(ct_file, recipe).tolist()))
    for bad in broken:
        for call in (inspect_dicom, lambda p: read_dicom_rgb(p, recipe), lambda p: scan_entries(p, "x", recipe)):
            with pytest.raises(ImageLoadError) as info:
                call(bad)
            outputs.append(str(info.value))
            outputs.append(info.value.reason)
    return outputs


def test_no_patient_data_in_any_output_log_or_warning(
    tmp_path: Path, ct_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _broken_copies(tmp_path, ct_file)  # written by the test's own pydicom calls, outside the capture
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = _all_outputs(ct_file, broken)
    seen = "\n".join(outputs) + caplog.text + "\n".join(str(w.message) for w in caught)
    assert "CT" in seen and "truncated" in seen and "no pixel data" in seen  # the outputs are real
    for secret in SECRETS:
        assert secret.lower() not in seen.lower(), secret
    # The header really holds them (the test would be vacuous otherwise).
    full = pydicom.dcmread(ct_file, stop_before_pixels=True)
    assert str(full.PatientID) == PATIENT_ID


def test_library_messages_quoting_patient_values_are_scrubbed(ct_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def leaky(*args: object, **kwargs: object) -> None:
        raise ValueError(f"bad value {PATIENT_NAME!r} for PatientID {PATIENT_ID} born {BIRTH_DATE}")

    monkeypatch.setattr(dicom_pixels, "pixel_array", leaky)
    with pytest.raises(ImageLoadError) as info:
        read_dicom_rgb(ct_file, DisplayRecipe())
    message = str(info.value)
    assert "cannot decode the pixel data" in message and "[removed]" in message
    for secret in SECRETS:
        assert secret.lower() not in message.lower(), secret


def test_technical_tags_are_an_allow_list(ct_file: Path) -> None:
    tags = technical_tags(read_technical_header(ct_file))
    assert set(tags) <= set(dicom_images.SHOWN_TAGS) | {"TransferSyntax", "SOPClass"}
    assert tags["Modality"] == "CT" and tags["Rows"] == 30 and tags["Columns"] == 20
    assert tags["WindowCenter"] == 40.0  # first of several
    header = read_technical_header(io.BytesIO(ct_file.read_bytes()))
    assert "PatientName" not in header and "PatientID" not in header


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_rle_2frame.dcm"])
def test_corrupted_files_only_ever_raise_image_load_error(name: str) -> None:
    data = Path(_testdata(name)).read_bytes()
    rng = np.random.default_rng(7)
    recipe = DisplayRecipe(frames="each")
    for trial in range(60):
        damaged = bytearray(data)
        if trial % 2:
            damaged = damaged[: int(rng.integers(132, len(damaged)))]
        else:
            for pos in rng.integers(132, len(damaged), size=int(rng.integers(1, 12))):
                damaged[int(pos)] = int(rng.integers(0, 256))
        source = io.BytesIO(bytes(damaged))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for call in (lambda: scan_entries(source, "x", recipe), lambda: read_display_rgb(source, None, recipe)):
                try:
                    call()
                except ImageLoadError as exc:
                    assert exc.reason
