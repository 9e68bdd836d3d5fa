"""PET DICOM series in and out: geometry (oblique, tilted, flipped), values to the quantisation of
the stored integers, compressed transfer syntaxes, series selection and inconsistent series."""
import hashlib
import importlib.util
import shutil

import numpy as np
import pydicom
import pytest
from dicom_support import assert_within_quantisation, edit_file, oblique_affine, write_series
from phantom_head import affine_for, short_and_long

from PETITELib.dicom import find_series, read_series, reading, write_derived_series
from PETITELib.errors import PetiteError
from PETITELib.nifti_io import load_volume, save_volume

SHAPE = (20, 18, 12)
AFFINE_TOLERANCE_MM = 1e-4


def tilted_affine() -> np.ndarray:
    """Slices shifted along y from one to the next (a gantry tilt of about 14 degrees): a shear."""
    affine = affine_for((2.0, 2.0, 3.0))
    affine[1, 2] = 0.75
    return affine


def folder_digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def volume():
    short, _, _ = short_and_long(SHAPE, seed=3)
    return short


@pytest.mark.parametrize("affine", [affine_for(), oblique_affine(), tilted_affine()],
                         ids=["axial", "oblique", "gantry-tilt"])
def test_nifti_to_dicom_to_nifti_keeps_geometry_and_values(volume, affine, tmp_path):
    source = save_volume(tmp_path / "in.nii.gz", volume, affine)
    original = load_volume(source)
    write_series(tmp_path / "series", original.array, original.affine)
    series = load_volume(tmp_path / "series")  # the folder goes through the one loader of every command
    back = load_volume(save_volume(tmp_path / "back.nii.gz", series.array, series.affine))
    assert back.array.shape == original.array.shape
    assert np.abs(back.affine - original.affine).max() < AFFINE_TOLERANCE_MM
    assert_within_quantisation(back.array, original.array)


def test_the_grid_of_a_series_from_its_headers(volume, tmp_path):
    from PETITELib.dicom.reader import series_grid

    write_series(tmp_path / "series", volume, oblique_affine())
    shape, spacing = series_grid(tmp_path / "series")
    assert shape == SHAPE and spacing == pytest.approx((2.0, 2.5, 3.0), abs=1e-9)


def test_a_flipped_slice_axis_comes_back_sorted_along_the_normal(volume, tmp_path):
    affine = affine_for()
    affine[:3, 2] *= -1  # slices stacked downwards: negative determinant
    write_series(tmp_path / "series", volume, affine)
    series = read_series(tmp_path / "series")
    flipped = affine.copy()
    flipped[:3, 2] *= -1
    flipped[:3, 3] = affine[:3, :3] @ [0, 0, SHAPE[2] - 1] + affine[:3, 3]
    assert np.abs(series.affine - flipped).max() < AFFINE_TOLERANCE_MM
    assert_within_quantisation(series.array, volume[:, :, ::-1])


def test_each_slice_has_its_own_rescale_slope(volume, tmp_path):
    write_series(tmp_path / "series", volume, affine_for())
    slopes = {float(pydicom.dcmread(str(p)).RescaleSlope) for p in (tmp_path / "series").iterdir()}
    assert len(slopes) > SHAPE[2] // 2
    # the reader applies each slope to its own slice (and the intercept)
    first = sorted((tmp_path / "series").iterdir())[0]
    edit_file(first, RescaleIntercept="100")
    assert_within_quantisation(read_series(tmp_path / "series").array[:, :, :1] - 100, volume[:, :, :1])


def test_compressed_transfer_syntaxes_decode_to_the_same_values(tmp_path):
    from pydicom.uid import RLELossless

    volume, _, _ = short_and_long((64, 64, 3), seed=6)  # JPEG 2000's wavelet levels need 64-pixel slices

    syntaxes = [RLELossless]
    if importlib.util.find_spec("openjpeg") is not None:  # pylibjpeg-openjpeg: JPEG 2000 encoder and decoder
        from pydicom.uid import JPEG2000Lossless

        syntaxes.append(JPEG2000Lossless)
    plain = read_series(write_series(tmp_path / "plain", volume, affine_for()))
    for syntax in syntaxes:
        folder = shutil.copytree(tmp_path / "plain", tmp_path / syntax.name.split()[0])
        for path in folder.iterdir():
            dataset = pydicom.dcmread(str(path))
            dataset.compress(syntax)
            dataset.save_as(str(path), enforce_file_format=True)
        assert pydicom.dcmread(str(next(folder.iterdir()))).file_meta.TransferSyntaxUID == syntax
        np.testing.assert_array_equal(read_series(folder).array, plain.array)


def test_a_transfer_syntax_no_installed_package_decodes_is_refused_by_name(volume, tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG2MPML

    folder = write_series(tmp_path / "series", volume, affine_for())
    path = sorted(folder.iterdir())[3]
    dataset = pydicom.dcmread(str(path))
    dataset.file_meta.TransferSyntaxUID = MPEG2MPML
    dataset.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(str(path), enforce_file_format=True)
    with pytest.raises(PetiteError) as error:
        read_series(folder)
    assert str(error.value).startswith(f"{path}: transfer syntax MPEG2 Main Profile / Main Level")
    assert "cannot be decoded" in str(error.value)


def test_several_series_are_listed_and_one_can_be_picked(volume, tmp_path):
    folder = tmp_path / "mixed"
    write_series(folder / "a", volume, affine_for(), number=1, key="a", description="PET AC")
    write_series(folder / "b", volume * 2, affine_for(), number=2, key="a", description="PET NAC")
    found = find_series(folder)
    assert len(found) == 2
    with pytest.raises(PetiteError) as error:
        read_series(folder)
    message = str(error.value)
    assert message.startswith(f"{folder}: holds 2 series, pick one with --series UID: ")
    assert all(uid in message for uid in found) and "'PET NAC'" in message and "\n" not in message
    nac = next(uid for uid, series in found.items() if "NAC" in series.describe())
    assert_within_quantisation(read_series(folder, series_uid=nac).array, volume * 2)
    with reading(series={folder: nac}):  # what --series sets for the commands
        assert load_volume(folder).series_uid == nac
    with pytest.raises(PetiteError, match="--series 1.2.3: no such series here"):
        read_series(folder, series_uid="1.2.3")


def test_files_that_are_not_dicom_are_ignored(volume, tmp_path):
    folder = write_series(tmp_path / "series", volume, affine_for())
    (folder / "notes.txt").write_text("scanner export")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    assert read_series(folder).array.shape == SHAPE
    (tmp_path / "empty").mkdir()
    with pytest.raises(PetiteError, match="empty: no DICOM files found"):
        read_series(tmp_path / "empty")


@pytest.mark.parametrize("spoil, expected", [
    ("modality", "IM_0004.dcm: modality CT, not PET (PT)"),
    ("interior", "IM_0007.dcm: 1 slice(s) missing before this one"),
    ("last", "12 images where Number of Slices (0054,0081) says 13: slices missing (Image Index 13)"),
    ("duplicate", "at the same position as"),
    ("orientation", "IM_0005.dcm: Image Orientation (Patient) differs"),
    ("position", "IM_0002.dcm: missing or malformed Image Position (Patient) (0020,0032)"),
    ("spacing", "IM_0003.dcm: Pixel Spacing [2.5, 2] differs"),
    ("units", "slices of one series in different Units (0054,1001): BQML, CNTS"),
])
def test_inconsistent_series_are_refused_naming_the_file(spoil, expected, tmp_path):
    short, _, _ = short_and_long((20, 18, 13), seed=5)
    folder = write_series(tmp_path / "series", short, affine_for())
    files = sorted(folder.iterdir())
    if spoil == "modality":
        edit_file(files[3], Modality="CT")
    elif spoil == "interior":
        files[5].unlink()
    elif spoil == "last":
        files[-1].unlink()
    elif spoil == "duplicate":
        shutil.copy(files[4], folder / "copy.dcm")
        edit_file(folder / "copy.dcm", SOPInstanceUID="1.2.3.4")
    elif spoil == "orientation":
        edit_file(files[4], ImageOrientationPatient=[1, 0, 0, 0, 0.9, 0.43589])
    elif spoil == "position":
        edit_file(files[1], ImagePositionPatient=None)
    elif spoil == "spacing":
        edit_file(files[2], PixelSpacing=[2.5, 2.0])
    elif spoil == "units":
        edit_file(files[6], Units="CNTS")
    before = folder_digest(folder)
    with pytest.raises(PetiteError) as error:
        read_series(folder)
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert folder_digest(folder) == before  # inputs are never modified


def test_derived_series_keeps_study_geometry_and_values(volume, tmp_path):
    source = write_series(tmp_path / "source", volume, oblique_affine(), description="PET Brain")
    before = folder_digest(source)
    read = read_series(source)
    estimate = read.array * 0.9 + 50.0
    files = write_derived_series(source, estimate, read.affine, tmp_path / "derived", description="PETITE test",
                                 derivation="a test derivation", units="BQML")
    assert len(files) == SHAPE[2] and folder_digest(source) == before
    derived = read_series(tmp_path / "derived")
    assert np.abs(derived.affine - read.affine).max() < AFFINE_TOLERANCE_MM
    assert_within_quantisation(derived.array, estimate)
    old, new = pydicom.dcmread(str(read.files[0])), pydicom.dcmread(str(derived.files[0]))
    assert new.StudyInstanceUID == old.StudyInstanceUID and new.FrameOfReferenceUID == old.FrameOfReferenceUID
    assert new.SeriesInstanceUID != old.SeriesInstanceUID and new.SOPInstanceUID != old.SOPInstanceUID
    assert list(new.ImageType)[:2] == ["DERIVED", "PRIMARY"] and new.SeriesDescription == "PETITE test"
    assert new.SeriesNumber == old.SeriesNumber + 1000 and new.Modality == "PT" and new.Units == "BQML"
    for keyword in ("PatientName", "PatientID", "PatientWeight", "StudyDate", "SeriesTime", "DecayCorrection"):
        assert getattr(new, keyword) == getattr(old, keyword), keyword
    assert new.SourceImageSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID
    assert new.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose == \
        old.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
    # the derived series in SUV reads back with the same SUV as the source
    assert read_series(tmp_path / "derived", units="suv").suv_factor == read_series(source, units="suv").suv_factor
    with pytest.raises(PetiteError, match="already exists and is not empty"):
        write_derived_series(source, estimate, read.affine, tmp_path / "derived", description="x", derivation="x",
                             units="BQML")
    with pytest.raises(PetiteError, match="is not on the grid of"):
        write_derived_series(source, estimate[:, :, 1:], read.affine, tmp_path / "other", description="x",
                             derivation="x", units="BQML")
