"""``petite reconstruct`` / ``api.reconstruct``: geometry and units kept, adapters checked, no overwrite."""
import json

import numpy as np
import pytest
import torch
from phantom_head import short_and_long

from PETITELib import api
from PETITELib.backbones import build_backbone
from PETITELib.cli import main
from PETITELib.errors import PetiteError
from PETITELib.nifti_io import load_volume, save_volume
from PETITELib.peft import apply_peft, save_adapter, save_base_model

SHAPE = (70, 66, 40)  # one axis below the 64^3 ROI


def _oblique_affine():
    angle = np.deg2rad(15.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([2.03642, 2.03642, 2.425])
    affine[:3, 3] = [-71.3, 60.25, -48.0]
    return affine


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two untrained CvT-GAN bases (different seeds), an adapter of the first, a short/long pair."""
    root = tmp_path_factory.mktemp("recon")
    paths = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_backbone("cvtgan", "cpu")
        save_base_model(root / f"base{seed}.safetensors", model)
        paths[f"base{seed}"] = root / f"base{seed}.safetensors"
        if seed == 0:
            apply_peft(model, "petite")
            save_adapter(root / "adapter.safetensors", model)
            paths["adapter"] = root / "adapter.safetensors"
    short, long, _ = short_and_long(SHAPE, seed=4)
    affine = _oblique_affine()
    paths["short"] = save_volume(root / "short.nii.gz", short, affine)
    paths["long"] = save_volume(root / "long.nii.gz", long, affine)
    return paths


def test_output_keeps_affine_and_shape_exactly(files, tmp_path, capsys):
    out = tmp_path / "recon.nii.gz"
    assert main(["reconstruct", str(files["short"]), "-o", str(out), "--base", str(files["base0"]),
                 "--adapter", str(files["adapter"]), "--device", "cpu", "--quiet"]) == 0
    source, result = load_volume(files["short"]), load_volume(out)
    assert result.array.shape == source.array.shape == SHAPE
    np.testing.assert_array_equal(result.affine, source.affine)


def test_output_is_in_the_input_units(files):
    volume = load_volume(files["short"])
    one = api.reconstruct(volume.array, volume.affine, base=files["base0"], adapter=files["adapter"], device="cpu")
    ten = api.reconstruct(volume.array * 10.0, volume.affine, base=files["base0"], adapter=files["adapter"],
                          device="cpu")
    assert one.shape == SHAPE and one.dtype == np.float32
    scale = float(np.abs(one).max())
    np.testing.assert_allclose(ten, 10.0 * one, rtol=1e-4, atol=1e-4 * 10.0 * scale)
    assert 0.5 < float(one.mean() / volume.array.mean()) < 2.0  # same units, not network units


def test_reference_writes_metrics_error_maps_and_figure(files, tmp_path):
    out = tmp_path / "r.nii.gz"
    assert main(["reconstruct", str(files["short"]), "-o", str(out), "--base", str(files["base0"]),
                 "--reference", str(files["long"]), "--device", "cpu", "--quiet"]) == 0
    report = json.loads((tmp_path / "r_metrics.json").read_text())
    for name in ("input", "output"):
        assert {"psnr", "ssim", "nrmse", "psnr_whole", "ssim_whole", "nrmse_whole"} <= set(report["metrics"][name])
    signed, absolute = load_volume(tmp_path / "r_error.nii.gz"), load_volume(tmp_path / "r_abs_error.nii.gz")
    expected = load_volume(out).array - load_volume(files["long"]).array
    np.testing.assert_allclose(signed.array, expected, atol=1e-3)
    np.testing.assert_allclose(absolute.array, np.abs(expected), atol=1e-3)
    assert (tmp_path / "r_comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_adapter_for_another_base_is_refused_in_one_line(files, tmp_path, capsys):
    code = main(["reconstruct", str(files["short"]), "-o", str(tmp_path / "x.nii.gz"), "--base",
                 str(files["base1"]), "--adapter", str(files["adapter"]), "--device", "cpu", "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert "adapter.safetensors" in error and not (tmp_path / "x.nii.gz").exists()
    with pytest.raises(PetiteError):
        api.evaluate(files["short"].parent, base=files["base1"], adapters=[files["adapter"]], device="cpu")


def test_existing_output_is_never_overwritten_without_overwrite(files, tmp_path, capsys):
    out = tmp_path / "r.nii.gz"
    out.write_bytes(b"keep me")
    argv = ["reconstruct", str(files["short"]), "-o", str(out), "--base", str(files["base0"]), "--device", "cpu",
            "--quiet"]
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(argv + ["--overwrite"]) == 0
    assert load_volume(out).array.shape == SHAPE


def test_bad_inputs_give_one_line_errors(files, tmp_path, capsys, monkeypatch):
    assert main(["reconstruct", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "o.nii.gz"),
                 "--base", str(files["base0"]), "--quiet"]) == 2
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path / "no-zoo"))  # no --base and no shipped base
    assert main(["reconstruct", str(files["short"]), "-o", str(tmp_path / "o.nii.gz"), "--quiet"]) == 2
    monkeypatch.delenv("PETITE_ZOO_DIR")
    assert main(["reconstruct", str(files["short"]), "-o", str(tmp_path / "o.nii.gz"),
                 "--base", str(files["adapter"]), "--quiet"]) == 2
    assert main(["reconstruct", str(files["short"]), "-o", str(tmp_path / "o.nii.gz"),
                 "--base", str(files["base0"]), "--overlap", "1.5", "--quiet"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("petite: error:") for line in errors)
    with pytest.raises(PetiteError, match="3 dimensions"):
        api.reconstruct(np.zeros((4, 4)), np.eye(4), base=files["base0"])
