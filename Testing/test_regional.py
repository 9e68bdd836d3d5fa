"""Regional uptake report on a synthetic label volume with known means, and its wiring into evaluation."""
import csv
import io
import json

import numpy as np
import pytest
import torch
from phantom_head import affine_for, head_activity, short_and_long

from PETITELib import regional
from PETITELib.data.cohort import Subject
from PETITELib.engine.evaluation import evaluate_models
from PETITELib.engine.reports import evaluation_table
from PETITELib.errors import PetiteError
from PETITELib.nifti_io import Volume, save_volume

SHAPE = (12, 10, 8)
NAMES = {"1": "frontal cortex", "7": "cerebellum", "8": "white matter", "9": "cerebrospinal fluid"}
# region -> (x range, long, reconstruction, short) mean uptake in Bq/mL
TRUE_MEANS = {1: (range(0, 4), 8000.0, 7600.0, 8080.0), 7: (range(4, 6), 6000.0, 6300.0, 5940.0),
              8: (range(6, 10), 2000.0, 2100.0, 2000.0), 9: (range(10, 11), 100.0, 110.0, 100.0)}


def synthetic(tmp_path):
    """Label volume (x = 11 is background) and three images whose region means are TRUE_MEANS
    exactly: each region is its mean plus a +-d pattern along y that averages to zero."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    images = {name: np.zeros(SHAPE, dtype=np.float32) for name in ("long", "reconstruction", "short")}
    pattern = np.where(np.arange(SHAPE[1]) % 2 == 0, 1.0, -1.0)[None, :, None]
    for label, (xs, *means) in TRUE_MEANS.items():
        labels[list(xs)] = label
        for (name, image), mean in zip(images.items(), means):
            image[list(xs)] = mean + 0.1 * mean * pattern
    affine = affine_for((2.0, 2.0, 2.0))
    path = save_volume(tmp_path / "labels.nii.gz", labels, affine, dtype=np.uint8)
    (tmp_path / "labels.json").write_text(json.dumps(NAMES))
    volumes = {"short": Volume(images["short"], affine), "reconstruction": Volume(images["reconstruction"], affine),
               "long": Volume(images["long"], affine)}
    return path, volumes


def test_means_bias_suvr_and_contrast_by_hand(tmp_path):
    path, volumes = synthetic(tmp_path)
    report = regional.report_for_volumes(volumes, path)
    rows = {row["label"]: row for row in report["regions"]}
    assert report["images"] == ["short", "reconstruction", "long"] and report["units"] == "image units"
    assert report["reference_region"] == {"label": 7, "name": "cerebellum"}
    assert [rows[label]["voxels"] for label in (1, 7, 8, 9)] == [320, 160, 320, 80]
    for label, (_, long, recon, short) in TRUE_MEANS.items():
        assert rows[label]["mean"] == pytest.approx({"short": short, "reconstruction": recon, "long": long})
    assert rows[1]["tissue"] == "grey" and rows[8]["tissue"] == "white" and rows[9]["tissue"] == "other"
    # bias vs long: -5, +5, +5, +10 % for the reconstruction
    assert [rows[label]["bias_pct"]["reconstruction"] for label in (1, 7, 8, 9)] == pytest.approx([-5, 5, 5, 10])
    # SUVR (cerebellum): long 8000/6000 = 1.333333, reconstruction 7600/6300 = 1.206349 -> -9.5238 %
    assert rows[1]["suvr"]["long"] == pytest.approx(1.333333, rel=1e-6)
    assert rows[1]["suvr"]["reconstruction"] == pytest.approx(1.206349, rel=1e-6)
    assert rows[1]["suvr_bias_pct"]["reconstruction"] == pytest.approx(-9.52381, rel=1e-5)
    assert rows[8]["suvr_bias_pct"]["reconstruction"] == pytest.approx(0.0, abs=1e-9)
    # grey = (320 * 8000 + 160 * 6000) / 480 = 7333.33; / 2000 = 3.666667 (long);
    # reconstruction (320 * 7600 + 160 * 6300) / 480 / 2100 = 3.412698, ratio 0.930736
    assert report["grey_white_contrast"]["long"] == pytest.approx(3.666667, rel=1e-6)
    assert report["grey_white_contrast"]["reconstruction"] == pytest.approx(3.412698, rel=1e-6)
    recon, short = report["summary"]["reconstruction"], report["summary"]["short"]
    assert recon == pytest.approx({"regional_abs_bias_pct": 5.0, "suvr_abs_bias_pct": 4.761905,  # (9.5238 + 0) / 2
                                   "gw_contrast": 3.412698, "gw_contrast_vs_long": 0.930736}, rel=1e-5)
    # short: bias +1, -1, 0 -> 0.6667; SUVR bias 2.0202 (cortex) and 1.0101 (white) -> 1.51515; contrast 3.683333
    assert short == pytest.approx({"regional_abs_bias_pct": 0.666667, "suvr_abs_bias_pct": 1.515152,
                                   "gw_contrast": 3.683333, "gw_contrast_vs_long": 1.004545}, rel=1e-5)


def test_reference_region_by_number_name_or_part_of_a_name(tmp_path):
    path, volumes = synthetic(tmp_path)
    long = volumes["long"]
    assert regional.load_regions(path, long, "long", "8").reference_region == 8
    assert regional.load_regions(path, long, "long", "White Matter").reference_region == 8
    assert regional.load_regions(path, long, "long", "cortex").reference_region == 1
    for option, problem in (("3", "no voxel of"), ("r", "matches several regions"), ("putamen", "matches no region")):
        with pytest.raises(PetiteError, match=f"--ref-region {option}: {problem}"):
            regional.load_regions(path, long, "long", option)
    (tmp_path / "labels.json").unlink()  # unnamed labels: numbered, no default SUVR reference
    report = regional.report_for_volumes(volumes, path)
    assert report["reference_region"] is None and "suvr" not in report["regions"][0]
    assert report["regions"][0]["name"] == "region 1" and "suvr_abs_bias_pct" not in report["summary"]["short"]
    assert "no SUVR: the labels name no cerebellum" in regional.format_report(report)


def test_label_names_of_a_simulated_cohort_come_from_its_scanner_json(tmp_path):
    subject = tmp_path / "scanner4" / "sub-001"
    subject.mkdir(parents=True)
    (tmp_path / "scanner4" / "scanner.json").write_text(json.dumps({"id": 4, "labels": NAMES}))
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:4], labels[4:6] = 1, 7
    save_volume(subject / "labels.nii.gz", labels, affine_for(), dtype=np.uint8)
    assert regional.read_label_table(subject / "labels.nii.gz").name(7) == "cerebellum"


@pytest.mark.parametrize("spoil, problem", [
    ("shape", "shape 12x10x7 differs from long"), ("affine", "affine differs from long's by up to 1 mm"),
    ("fraction", "not a label volume"), ("empty", "no labelled voxel")])
def test_labels_that_do_not_fit_are_refused(spoil, problem, tmp_path):
    _, volumes = synthetic(tmp_path)
    labels = np.ones(SHAPE, dtype=np.float32)
    affine = affine_for((2.0, 2.0, 2.0))
    if spoil == "shape":
        labels = labels[:, :, 1:]
    elif spoil == "affine":
        affine[0, 3] += 1.0
    elif spoil == "fraction":
        labels[0, 0, 0] = 0.5
    elif spoil == "empty":
        labels[:] = 0
    path = save_volume(tmp_path / "bad.nii.gz", labels, affine)
    with pytest.raises(PetiteError, match=f"bad.nii.gz: {problem}"):
        regional.load_regions(path, volumes["long"], "long")


def test_report_files_table_csv_and_png(tmp_path):
    path, volumes = synthetic(tmp_path)
    report = regional.report_for_volumes(volumes, path)
    files = regional.write_report(report, tmp_path / "out")
    assert [p.name for p in files] == ["out_regions.json", "out_regions.csv", "out_regions.png"]
    assert json.loads(files[0].read_text()) == json.loads(json.dumps(report))
    rows = list(csv.DictReader(io.StringIO(files[1].read_text())))
    assert len(rows) == 4 * 3 and rows[0]["name"] == "frontal cortex" and rows[0]["image"] == "short"
    assert float(rows[1]["bias_pct"]) == pytest.approx(-5.0) and rows[2]["bias_pct"] == ""
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = regional.format_report(report)
    assert "| 1 frontal cortex | 320 | 8080.0 | 7600.0 | 8000.0 | 1.00 | -5.00 |" in table
    with pytest.raises(PetiteError, match="out_regions.json: already exists"):
        regional.write_report(report, tmp_path / "out")


def test_merge_and_average_of_subject_reports(tmp_path):
    path, volumes = synthetic(tmp_path)
    one = regional.report_for_volumes({"short": volumes["short"], "long": volumes["long"]}, path)
    two = regional.report_for_volumes({"reconstruction": volumes["reconstruction"], "long": volumes["long"]}, path)
    merged = regional.merge([one, two])
    assert merged["images"] == ["short", "reconstruction", "long"]
    assert merged == json.loads(json.dumps(regional.report_for_volumes(volumes, path)))
    doubled = {name: Volume(v.array * 2, v.affine) for name, v in volumes.items()}
    mean = regional.average([regional.report_for_volumes(volumes, path), regional.report_for_volumes(doubled, path)])
    assert mean["subjects"] == 2
    assert mean["regions"][0]["mean"]["long"] == pytest.approx(1.5 * 8000.0)
    assert mean["summary"]["reconstruction"]["suvr_abs_bias_pct"] == pytest.approx(4.761905, rel=1e-5)


def test_regional_targets():
    rows = {"input": {"suvr_abs_bias_pct": 2.5}, "petite": {"suvr_abs_bias_pct": 1.5, "gw_contrast_vs_long": 0.985}}
    checks = regional.regional_targets(rows)
    assert checks["petite_suvr_bias_ok"] and not checks["petite_gw_contrast_ok"]
    rows["input"]["suvr_abs_bias_pct"] = 1.0
    assert not regional.regional_targets(rows)["petite_suvr_bias_ok"]
    assert regional.regional_targets({"input": {}, "petite": {"psnr": 30.0}}) == {}


def test_evaluation_adds_regional_figures_where_subjects_have_labels(tmp_path, one_intra_op_thread):
    subjects = []
    for index in range(2):
        folder = tmp_path / f"sub-{index}"
        short, long, _ = short_and_long((40, 40, 30), seed=index)
        activity = head_activity((40, 40, 30), seed=index)
        labels = np.select([activity == 4.0, activity == 1.0], [1, 8], 0).astype(np.uint8)
        labels[(activity == 4.0) & (np.indices(labels.shape)[2] < 10)] = 7
        save_volume(folder / "short.nii.gz", short, affine_for())
        save_volume(folder / "long.nii.gz", long, affine_for())
        save_volume(folder / "labels.nii.gz", labels, affine_for(), dtype=np.uint8)
        (folder / "labels.json").write_text(json.dumps(NAMES))
        subjects.append(Subject(f"sub-{index}", folder / "short.nii.gz", folder / "long.nii.gz",
                                labels=folder / "labels.nii.gz" if index == 0 else None))
    # a model that returns its input: its regional figures must be the input's
    results = evaluate_models(subjects, {"identity": lambda: (lambda x: x)}, device=torch.device("cpu"))
    first, second = (results["identity"]["per_subject"][f"sub-{i}"] for i in range(2))
    assert set(regional.SUMMARY_KEYS) <= set(first) and not set(regional.SUMMARY_KEYS) & set(second)
    for key in regional.SUMMARY_KEYS:
        assert first[key] == pytest.approx(results["input"]["per_subject"]["sub-0"][key], rel=1e-4, abs=1e-4)
    assert list(results["identity"]["regions"]) == ["sub-0"]
    report = regional.cohort_report(results)
    assert report["images"] == ["input", "identity", "long"] and report["reference_region"]["name"] == "cerebellum"
    table = evaluation_table({"methods": {name: {**entry, "spec": ""} for name, entry in results.items()}})
    assert "SUVR bias (mean abs %)" in table and "GM/WM contrast vs long" in table
