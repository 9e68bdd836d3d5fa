"""Issue 14, volumes: the accepted input domain (docs/reliability.md), malformed NIfTI headers,
outputs that are not finite or leave the sane range, and bad arrays given to the Python API.
"""
import struct

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from bad_input_support import refused, uniform_noise, write_cohort, write_volume
from phantom_head import affine_for, short_and_long
from PETITELib import api
from PETITELib.backbones import build_backbone
from PETITELib.errors import PetiteError
from PETITELib.nifti_io import save_volume
from PETITELib.peft import save_base_model

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

MIN_VOXELS, MIN_EXTENT_MM = 16, 48  # per axis, as docs/reliability.md states


def _reconstruct(path, output, *extra):
    return ["reconstruct", str(path), "-o", str(output), "--device", "cpu", "--quiet", *extra]


def _raw_nifti(path, array, pixdim=(2.0, 2.0, 2.0), srow=None):
    """A NIfTI written field by field (nibabel refuses to build such headers from an affine)."""
    header = nib.Nifti1Image(array, None).header
    header["pixdim"][1:4] = pixdim
    header.set_qform(None, code=0)
    header["sform_code"] = 0
    if srow is not None:
        header["srow_x"], header["srow_y"], header["srow_z"] = srow
        header["sform_code"] = 1
    nib.Nifti1Image(array, None, header=header).to_filename(str(path))
    return path


def _negative(shape=(64, 64, 40)):
    short = short_and_long(shape, seed=2)[0]
    flat = short.reshape(-1)
    chosen = np.random.default_rng(0).choice(flat.size, int(0.3 * flat.size), replace=False)
    flat[chosen] = -np.abs(flat[chosen]) - 3000.0  # 30 % of the voxels strongly negative
    return short


def _thin_slab():
    """300 x 300 x 20: a 20-slice slab of a head, in-plane resampled (the issue's second example)."""
    short = short_and_long((96, 96, 64), seed=3)[0][:, :, 22:42]
    return ndimage.zoom(short, (300 / 96, 300 / 96, 1), order=1).astype(np.float32)


OUT_OF_DOMAIN = {  # name: (array, voxel size in mm, a word the error line must contain)
    "8-cube": (lambda: uniform_noise((8, 8, 8)), (2.0, 2.0, 2.0), f"{MIN_VOXELS}"),
    "300x300x20": (_thin_slab, (0.64, 0.64, 1.22), f"{MIN_EXTENT_MM} mm"),
    "negative-30-percent": (_negative, (2.0, 2.0, 2.4), "negative"),
    "voxels-6mm": (lambda: short_and_long((64, 64, 40))[0], (6.0, 6.0, 6.0), "voxel size"),
    "no-activity": (lambda: np.zeros((64, 64, 40), np.float32), (2.0, 2.0, 2.4), "activity"),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_DOMAIN))
def test_volume_outside_the_accepted_domain_is_refused_saying_what_is_accepted(case, tmp_path, capsys):
    make, spacing, word = OUT_OF_DOMAIN[case]
    source = save_volume(tmp_path / "in.nii.gz", make(), affine_for(spacing))
    line = refused(capsys, _reconstruct(source, tmp_path / "out.nii.gz"), ["in.nii.gz"], inputs=[source],
                   folders=[tmp_path])
    assert word in line
    with pytest.raises(PetiteError, match=word):
        volume = nib.load(str(source))
        api.reconstruct(np.asanyarray(volume.dataobj), volume.affine, device="cpu")


def test_zero_voxel_size_in_the_header_is_refused(tmp_path, capsys):
    source = _raw_nifti(tmp_path / "zero.nii", short_and_long((64, 64, 40))[0], pixdim=(2.0, 2.0, 2.4))
    with open(source, "r+b") as handle:  # nibabel writes 1 for a 0 pixdim: patch the header's pixdim[1]
        handle.seek(80)
        handle.write(struct.pack("<f", 0.0))
    with open(source, "rb") as handle:
        assert nib.Nifti1Header.from_fileobj(handle, check=False)["pixdim"][1] == 0
    line = refused(capsys, _reconstruct(source, tmp_path / "out.nii.gz"), ["zero.nii"], inputs=[source],
                   folders=[tmp_path])
    assert "voxel size" in line


def test_sform_with_a_zero_column_is_refused(tmp_path, capsys):
    srow = ([2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.4, 0.0])
    source = _raw_nifti(tmp_path / "zerocol.nii.gz", short_and_long((64, 64, 40))[0], srow=srow)
    refused(capsys, _reconstruct(source, tmp_path / "out.nii.gz"), ["zerocol.nii.gz"], inputs=[source],
            folders=[tmp_path])


@pytest.fixture(scope="module")
def wild_bases(tmp_path_factory):
    """Models that exist but misbehave: an untrained UNETR (outputs far outside the input's range)
    and one whose last layer overflows float32 (non-finite outputs)."""
    folder = tmp_path_factory.mktemp("wild")
    torch.manual_seed(0)
    untrained = build_backbone("unetr", "cpu")
    save_base_model(folder / "untrained.safetensors", untrained)
    with torch.no_grad():
        for parameter in untrained.out.parameters():
            parameter.fill_(3e38)
    save_base_model(folder / "overflow.safetensors", untrained)
    return folder


@pytest.mark.parametrize("base", ["untrained", "overflow"])
def test_a_reconstruction_outside_the_sane_range_or_not_finite_is_never_written(base, wild_bases, tmp_path,
                                                                                capsys):
    source = write_volume(tmp_path / "in.nii.gz")
    model = wild_bases / f"{base}.safetensors"
    line = refused(capsys, _reconstruct(source, tmp_path / "out.nii.gz", "--base", str(model)),
                   ["in.nii.gz", model.name], inputs=[source, model], folders=[tmp_path])
    assert "range" in line or "finite" in line


def test_an_evaluation_scores_a_model_whose_output_leaves_the_sane_range(wild_bases, tmp_path):
    """Evaluations measure what a model gives (a poor figure, not a refusal); a non-finite output
    is still refused (it has no figure)."""
    cohort = write_cohort(tmp_path / "cohort", 1)
    result = api.evaluate(cohort, base=wild_bases / "untrained.safetensors", device="cpu")
    assert np.isfinite(result["methods"]["no-ft"]["mean"]["psnr"])
    assert result["methods"]["no-ft"]["mean"]["psnr"] < result["methods"]["input"]["mean"]["psnr"]
    with pytest.raises(PetiteError, match="non-finite"):
        api.evaluate(cohort, base=wild_bases / "overflow.safetensors", device="cpu")


API_VOLUMES = {
    "object": lambda: np.full((64, 64, 40), None, dtype=object),
    "complex": lambda: short_and_long((64, 64, 40))[0].astype(np.complex64),
    "boolean": lambda: short_and_long((64, 64, 40))[0] > 1000,
    "empty": lambda: np.zeros((0, 64, 40), np.float32),
    "strings": lambda: np.full((64, 64, 40), "a"),
}


@pytest.mark.parametrize("kind", sorted(API_VOLUMES))
def test_api_refuses_arrays_that_are_not_real_volumes(kind):
    with pytest.raises(PetiteError, match="volume") as info:
        api.reconstruct(API_VOLUMES[kind](), affine_for((2.0, 2.0, 2.4)), device="cpu")
    assert "\n" not in str(info.value)


API_AFFINES = {
    "zero": np.zeros((4, 4)),
    "singular": np.array([[2.0, 2.0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 2.4, 0], [0, 0, 0, 1]]),
    "zero-column": np.diag([2.0, 0.0, 2.4, 1.0]),
    "not-4x4": np.eye(3),
    "nan": np.diag([2.0, np.nan, 2.4, 1.0]),
    "object": np.full((4, 4), None, dtype=object),
    "complex": np.eye(4, dtype=np.complex64) * 2,
}


@pytest.mark.parametrize("kind", sorted(API_AFFINES))
def test_api_refuses_affines_that_are_not_voxel_to_mm_maps(kind):
    with pytest.raises(PetiteError, match="affine") as info:
        api.reconstruct(short_and_long((64, 64, 40))[0], API_AFFINES[kind], device="cpu")
    assert "\n" not in str(info.value)
