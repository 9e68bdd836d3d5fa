"""The commands on DICOM: reconstruct a generated series with the shipped base model into a derived
series that reads back, SUV units kept, DICOM cohorts (check-cohort, evaluate with labels,
simulate --format dicom), and bad DICOM inputs: one line on stderr, exit 2."""
import json
import shutil

import numpy as np
import pydicom
import pytest
from dicom_support import assert_within_quantisation, edit_file, write_series
from phantom_head import affine_for, head_activity, short_and_long

from PETITELib.cli import main
from PETITELib.data.cohort import load_cohort
from PETITELib.dicom import read_series
from PETITELib.nifti_io import load_volume, save_volume

SHAPE = (64, 60, 36)
NAMES = {"1": "frontal cortex", "7": "cerebellum", "8": "white matter"}


def labels_for(shape, seed):
    activity = head_activity(shape, seed)
    labels = np.select([activity == 4.0, activity == 1.0], [1, 8], 0).astype(np.uint8)
    labels[(activity == 4.0) & (np.indices(shape)[2] < shape[2] // 3)] = 7
    return labels


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A short and a long series of one phantom subject, and its labels (NIfTI + names)."""
    root = tmp_path_factory.mktemp("dicom-cli")
    short, long, _ = short_and_long(SHAPE, seed=7)
    affine = affine_for((2.0, 2.0, 2.4), origin=(-63.0, -59.0, -42.0))
    write_series(root / "short", short, affine, number=1, key="subject", description="PET Brain 5 min")
    write_series(root / "long", long, affine, number=2, key="subject", frame_seconds=1800.0,
                 description="PET Brain 30 min")
    save_volume(root / "labels.nii.gz", labels_for(SHAPE, 7), affine, dtype=np.uint8)
    (root / "labels.json").write_text(json.dumps(NAMES))
    return root


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_reconstruct_a_dicom_series_into_a_derived_series(series, tmp_path, capsys, one_intra_op_thread):
    out, dicom_out = tmp_path / "out.nii.gz", tmp_path / "derived"
    code, stdout, _ = run(["reconstruct", str(series / "short"), "-o", str(out), "--dicom-out", str(dicom_out),
                           "--adapter", "none", "--device", "cpu", "--quiet", "--reference", str(series / "long"),
                           "--labels", str(series / "labels.nii.gz")], capsys)
    assert code == 0 and str(dicom_out) in stdout and "SUVR (reference region: 7 cerebellum)" in stdout
    source, output = read_series(series / "short"), load_volume(out)
    assert np.abs(output.affine - source.affine).max() < 1e-4
    # the derived series reads back with pydicom and with PETITE's reader: same geometry, same values
    derived = read_series(dicom_out)
    assert np.abs(derived.affine - source.affine).max() < 1e-4 and derived.units == "BQML"
    assert_within_quantisation(derived.array, output.array)
    files = sorted(dicom_out.iterdir())
    assert len(files) == SHAPE[2]
    first, original = pydicom.dcmread(str(files[0])), pydicom.dcmread(str(source.files[0]))
    assert first.SeriesDescription == "PETITE (no adapter) long-scan estimate of PET Brain 5 min"
    assert "unetr-cpu-base" in first.DerivationDescription and list(first.ImageType)[0] == "DERIVED"
    assert first.StudyInstanceUID == original.StudyInstanceUID and first.SeriesInstanceUID != original.SeriesInstanceUID
    regions = json.loads((tmp_path / "out_regions.json").read_text())
    assert regions["images"] == ["short", "reconstruction", "long"] and regions["units"] == "Bq/mL"


def test_suv_units_are_kept_through_reconstruction(series, tmp_path, capsys, one_intra_op_thread):
    native, suv = tmp_path / "native.nii.gz", tmp_path / "suv.nii.gz"
    for path, units in ((native, "native"), (suv, "suv")):
        code, _, _ = run(["reconstruct", str(series / "short"), "-o", str(path), "--units", units, "--adapter",
                          "none", "--device", "cpu", "--quiet"] + (["--dicom-out", str(tmp_path / "suv-series")]
                                                                   if units == "suv" else []), capsys)
        assert code == 0
    factor = read_series(series / "short", units="suv").suv_factor
    # normalisation is scale-equivariant: the SUV reconstruction is the Bq/mL one times the SUV factor
    np.testing.assert_allclose(load_volume(suv).array, load_volume(native).array * factor, rtol=2e-4,
                               atol=2e-4 * float(load_volume(suv).array.max()))
    assert pydicom.dcmread(str(next((tmp_path / "suv-series").iterdir()))).Units == "GML"


def spoiled_copy(series, tmp_path, spoil):
    folder = shutil.copytree(series / "short", tmp_path / "input")
    files = sorted(folder.iterdir())
    if spoil == "mixed":
        shutil.copytree(series / "long", folder / "long")
    elif spoil == "missing-slice":
        files[10].unlink()
    elif spoil == "no-weight":
        for path in files:
            edit_file(path, PatientWeight=None)
    elif spoil == "not-pet":
        for path in files:
            edit_file(path, Modality="MR")
    return folder, files


@pytest.mark.parametrize("spoil, options, expected", [
    ("mixed", [], "holds 2 series, pick one with --series UID"),
    ("missing-slice", [], "IM_0012.dcm: 1 slice(s) missing before this one"),
    ("no-weight", ["--units", "suv"], "IM_0001.dcm: missing Patient's Weight (0010,1030)"),
    ("not-pet", [], "IM_0001.dcm: modality MR, not PET (PT)"),
    ("none", ["--labels", "labels.nii.gz"], "--labels: needs --reference"),
])
def test_bad_dicom_inputs_give_one_line_and_exit_2(series, tmp_path, capsys, spoil, options, expected):
    folder, _ = spoiled_copy(series, tmp_path, spoil)
    out = tmp_path / "out.nii.gz"
    code, stdout, stderr = run(["reconstruct", str(folder), "-o", str(out), "--adapter", "none", "--device", "cpu",
                                "--quiet", "--dicom-out", str(tmp_path / "derived"), *options], capsys)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and expected in stderr, stderr
    assert not out.exists() and not (tmp_path / "derived").exists()


def test_options_that_need_a_dicom_input_refuse_a_nifti_file(series, tmp_path, capsys):
    nifti = save_volume(tmp_path / "short.nii.gz", read_series(series / "short").array, affine_for())
    for options, expected in ((["--dicom-out", str(tmp_path / "d")], "--dicom-out: "),
                              (["--units", "suv"], "--units suv: "), (["--series", "1.2.3"], "--series: ")):
        code, _, stderr = run(["reconstruct", str(nifti), "-o", str(tmp_path / "o.nii.gz"), *options], capsys)
        assert code == 2 and stderr.startswith(f"petite: error: {expected}") and len(stderr.splitlines()) == 1
    code, _, stderr = run(["reconstruct", str(series / "short"), "-o", str(tmp_path / "o.nii.gz"),
                           "--dicom-out", str(series / "short" / "estimate")], capsys)
    assert code == 2 and "inside the input folder" in stderr


@pytest.fixture(scope="module")
def dicom_cohort(series, tmp_path_factory):
    """Two subjects with short/ and long/ series folders and labels.nii.gz (+ names)."""
    root = tmp_path_factory.mktemp("dicom-cohort") / "cohort"
    for index, seed in enumerate((7, 8)):
        folder = root / f"sub-{index:03d}"
        short, long, _ = short_and_long(SHAPE, seed=seed)
        affine = affine_for((2.0, 2.0, 2.4), origin=(-63.0, -59.0, -42.0))
        write_series(folder / "short", short, affine, number=1, key=f"s{index}")
        write_series(folder / "long", long, affine, number=2, key=f"s{index}", frame_seconds=1800.0)
        save_volume(folder / "labels.nii.gz", labels_for(SHAPE, seed), affine, dtype=np.uint8)
        (folder / "labels.json").write_text(json.dumps(NAMES))
    return root


def test_check_cohort_reads_dicom_subjects(dicom_cohort, capsys):
    cohort = load_cohort(dicom_cohort)
    assert cohort.subjects[0].short == dicom_cohort / "sub-000" / "short"
    assert cohort.subjects[0].labels == dicom_cohort / "sub-000" / "labels.nii.gz"
    code, stdout, _ = run(["check-cohort", str(dicom_cohort)], capsys)
    assert code == 0 and "2 subjects (plain layout), matrix 64x60x36, spacing 2x2x2.4 mm" in stdout


def test_evaluate_a_dicom_cohort_in_suv_with_its_labels(dicom_cohort, tmp_path, capsys, one_intra_op_thread):
    out = tmp_path / "result.json"
    code, stdout, _ = run(["evaluate", "--cohort", str(dicom_cohort), "--units", "suv", "--device", "cpu", "--quiet",
                           "--out", str(out)], capsys)
    assert code == 0
    assert "SUVR bias (mean abs %)" in stdout and "Regional uptake (SUV (g/mL)) (mean of 2 subjects)" in stdout
    regions = json.loads((tmp_path / "result_regions.json").read_text())
    assert regions["images"] == ["input", "no-ft", "long"] and regions["subjects"] == 2
    result = json.loads(out.read_text())
    assert {"regional_abs_bias_pct", "suvr_abs_bias_pct", "gw_contrast_vs_long"} <= set(result["methods"]["no-ft"]["mean"])
    assert (tmp_path / "result_regions.png").exists() and (tmp_path / "result_regions.csv").exists()
    code, _, stderr = run(["evaluate", "--cohort", str(dicom_cohort), "--out", str(out)], capsys)
    assert code == 2 and "result_regions.json: already exists" in stderr


def test_simulate_format_dicom_writes_series_with_the_simulated_suv(tmp_path, capsys):
    from PETITELib.data.simulator import simulate_cohort
    from PETITELib.dicom.simulated import convert_simulated_cohort

    folder = simulate_cohort(tmp_path / "sim", scanners=(5,), subjects=1, seed=2, mode="fast")[0]
    before = load_volume(folder / "sub-001" / "short.nii.gz")
    record = json.loads((folder / "scanner.json").read_text())["subjects"][0]
    convert_simulated_cohort(folder)
    assert not (folder / "sub-001" / "short.nii.gz").exists() and (folder / "sub-001" / "labels.nii.gz").exists()
    short = read_series(folder / "sub-001" / "short", units="suv")
    # the DICOM tags give back the simulator's own Bq/mL-per-SUV (dose and weight rounded in scanner.json)
    assert short.suv_factor * record["bq_per_ml_per_suv"] == pytest.approx(1.0, rel=1e-4)
    assert np.abs(short.affine - before.affine).max() < 1e-4
    assert_within_quantisation(read_series(folder / "sub-001" / "short").array, before.array)
    code, stdout, _ = run(["simulate", "--out", str(tmp_path / "cli"), "--scanners", "5", "--subjects", "1",
                           "--mode", "fast", "--format", "dicom"], capsys)
    assert code == 0
    cohort = load_cohort(tmp_path / "cli" / "scanner5")
    assert cohort.subjects[0].long.is_dir() and cohort.subjects[0].labels.name == "labels.nii.gz"


def test_pretrain_and_finetune_on_a_dicom_cohort(dicom_cohort, tmp_path, capsys, one_intra_op_thread):
    from PETITELib.peft import read_adapter

    tiny = ["--epochs", "1", "--batch-size", "1", "--crops-per-subject", "1", "--val-subjects", "1",
            "--device", "cpu", "--quiet"]
    base, adapter = tmp_path / "base.safetensors", tmp_path / "bitfit.safetensors"
    assert run(["pretrain", "--cohort", str(dicom_cohort), "--backbone", "cvtgan", "--preset", "cpu",
                "--out", str(base), *tiny], capsys)[0] == 0
    assert run(["finetune", "--base", str(base), "--cohort", str(dicom_cohort), "--peft", "bitfit",
                "--out", str(adapter), *tiny], capsys)[0] == 0
    assert len(read_adapter(adapter).metadata.training["val_subjects"]) == 1
