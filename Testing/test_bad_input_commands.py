"""Issue 14, commands: non-finite numbers, one model-name resolver for every command, the
train/validation split said out loud, a failed reference check leaving nothing, check-cohort's
stream, and pre-training on a cohort whose scans do not match.
"""
import json

import numpy as np
import pytest
import torch

from bad_input_support import listing, refused, write_cohort, write_volume
from phantom_head import affine_for, short_and_long, write_plain_subject
from PETITELib.backbones import build_backbone
from PETITELib.cli import main
from PETITELib.nifti_io import save_volume
from PETITELib.peft import save_base_model

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

TINY = ["--epochs", "1", "--batch-size", "2", "--crops-per-subject", "2", "--val-every", "1", "--device", "cpu",
        "--quiet"]


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    torch.manual_seed(0)
    base = folder / "base.safetensors"
    save_base_model(base, build_backbone("cvtgan", "cpu"))
    return {"cohort": write_cohort(folder / "cohort"), "base": base}


@pytest.mark.parametrize("spec", ["lora(alpha=inf)", "lora(alpha=1e999)", "enc=lora(r=4,alpha=inf)+dec=ssf"])
def test_non_finite_spec_arguments_are_refused(spec, capsys):
    refused(capsys, ["methods", "--backbone", "unetr", "--preset", "cpu", "--spec", spec], ["inf", spec])


@pytest.mark.parametrize("option,value", [("--lr", "inf"), ("--weight-decay", "inf"), ("--val-subjects", "inf"),
                                          ("--val-subjects", "nan"), ("--overlap", "nan"), ("--lr", "-inf")])
def test_non_finite_training_settings_are_refused_before_any_work(option, value, training, tmp_path, capsys):
    argv = ["finetune", "--base", str(training["base"]), "--cohort", str(training["cohort"]),
            "--out", str(tmp_path / "a.safetensors"), option, value, *TINY]
    refused(capsys, argv, [option], inputs=[training["base"], training["cohort"]], folders=[tmp_path])


@pytest.fixture(scope="module")
def scanner4_cohort(tmp_path_factory):
    """One phantom subject on scanner 4's grid (128 x 128 x 90 at 2 mm), where 'auto' picks scanner4."""
    root = tmp_path_factory.mktemp("scanner4")
    write_plain_subject(root / "sub-000", seed=1, shape=(128, 128, 90), affine=affine_for((2.0, 2.0, 2.0)))
    return root


@pytest.mark.parametrize("name", ["auto", "scanner4"])
def test_evaluate_takes_the_model_names_reconstruct_takes(name, scanner4_cohort, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["evaluate", "--cohort", str(scanner4_cohort), "--adapter", name, "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert list(result["methods"]) == ["input", "no-ft", "scanner4"]
    assert result["methods"]["scanner4"]["file"].endswith("unetr-cpu-scanner4-petite.safetensors")
    assert "scanner4" in capsys.readouterr().out


def test_evaluate_refuses_an_unknown_model_name(scanner4_cohort, tmp_path, capsys):
    refused(capsys, ["evaluate", "--cohort", str(scanner4_cohort), "--adapter", "scanner9", "--device", "cpu",
                     "--quiet"], ["scanner9"], inputs=[scanner4_cohort], folders=[tmp_path])


def test_finetune_says_how_many_subjects_train_and_validate(training, tmp_path, capsys):
    assert main(["finetune", "--base", str(training["base"]), "--cohort", str(training["cohort"]),
                 "--out", str(tmp_path / "a.safetensors"), "--val-subjects", "1", *TINY]) == 0
    error = capsys.readouterr().err
    assert "3 subjects: 2 train, 1 validate" in error


def test_a_reference_without_activity_is_refused_before_any_output_is_written(tmp_path, capsys):
    short = write_volume(tmp_path / "short.nii.gz")
    reference = save_volume(tmp_path / "zeros.nii.gz", np.zeros((64, 64, 40), np.float32), affine_for())
    refused(capsys, ["reconstruct", str(short), "-o", str(tmp_path / "out.nii.gz"), "--reference", str(reference),
                     "--device", "cpu", "--quiet"], ["zeros.nii.gz"], inputs=[short, reference], folders=[tmp_path])


def test_check_cohort_problems_go_to_stderr_and_the_summary_to_stdout(tmp_path, capsys):
    root = write_cohort(tmp_path / "cohort", 2)
    assert main(["check-cohort", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{root}: 2 subjects") and captured.err == ""
    (root / "sub-001" / "long.nii.gz").unlink()
    assert main(["check-cohort", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"{root}/sub-001/long.nii.gz: missing (long scan partner of short.nii.gz)",
                                         f"{root}: only 1 complete subject(s); at least 2 are needed for a "
                                         f"train/validation split"]


def test_pretrain_on_mismatched_scans_names_the_files(tmp_path, capsys):
    root = write_cohort(tmp_path / "cohort", 2)
    _, long, _ = short_and_long((64, 64, 40), seed=1)
    save_volume(root / "sub-001" / "long.nii.gz", long[:, :, :-2], affine_for(), overwrite=True)
    argv = ["pretrain", "--cohort", str(root), "--backbone", "cvtgan", "--preset", "cpu", "--out",
            str(tmp_path / "b.safetensors"), *TINY]
    line = refused(capsys, argv, ["sub-001/long.nii.gz"], inputs=[root], folders=[tmp_path])
    assert "validation size" not in line


def test_a_validation_size_the_cohort_cannot_give_names_the_option(training, tmp_path, capsys):
    argv = ["pretrain", "--cohort", str(training["cohort"]), "--backbone", "cvtgan", "--preset", "cpu",
            "--out", str(tmp_path / "b.safetensors"), "--val-subjects", "4", *TINY]
    line = refused(capsys, argv, ["--val-subjects"], inputs=[training["cohort"]], folders=[tmp_path])
    assert "3 subjects" in line


def test_check_cohort_reports_a_malformed_header_in_one_line_per_file(tmp_path, capsys):
    import nibabel as nib

    root = write_cohort(tmp_path / "cohort", 2)
    path = root / "sub-000" / "long.nii.gz"
    image = nib.load(str(path))
    header = image.header.copy()
    header["srow_y"] = [0.0, 0.0, 0.0, 0.0]
    header.set_qform(None, code=0)
    nib.Nifti1Image(np.asanyarray(image.dataobj), None, header=header).to_filename(str(path))
    before = listing(root)
    assert main(["check-cohort", str(root)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ") and "voxel" in lines[0]
    assert listing(root) == before
