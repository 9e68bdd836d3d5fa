"""Cohort folders (plain and BIDS-PET) and ``petite check-cohort``: every problem, one line each."""
import argparse
import json

import nibabel as nib
import numpy as np
import pytest

from PETITELib.commands import cohort as cohort_command
from PETITELib.data.cohort import MIN_SUBJECTS, check_cohort, load_cohort
from PETITELib.errors import PetiteError
from PETITELib.nifti_io import save_volume
from phantom_head import affine_for, short_and_long, write_plain_cohort, write_plain_subject


def run_cli(argv, capsys):
    """Run ``petite <argv>`` with only this module's sub-command registered; (rc, lines): the
    summary on stdout when the cohort is clean, else the problems, which go to stderr only."""
    parser = argparse.ArgumentParser(prog="petite")
    cohort_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc = args.func(args)
    captured = capsys.readouterr()
    if rc == 0:
        assert captured.err == ""
        return rc, captured.out.splitlines()
    assert captured.out == ""
    return rc, captured.err.splitlines()


def test_plain_cohort_lists_subjects_truth_and_scanner(tmp_path):
    root = write_plain_cohort(tmp_path / "scanner4", n_subjects=2)
    write_plain_subject(root / "sub-002", seed=2, truth=True)
    (root / "sub-000" / "notes.txt").write_text("ignored")
    (root / "scanner.json").write_text(json.dumps({"id": 4, "manufacturer": "Philips Healthcare",
                                                   "model_like": "Gemini-like PET", "matrix": [128, 128, 90]}))
    cohort = load_cohort(root)
    assert cohort.layout == "plain" and len(cohort) == 3
    assert [s.subject_id for s in cohort.subjects] == ["sub-000", "sub-001", "sub-002"]
    assert cohort.subjects[0].short == root / "sub-000" / "short.nii.gz"
    assert cohort.subjects[0].truth is None and cohort.subjects[2].truth == root / "sub-002" / "truth.nii.gz"
    assert cohort.scanner_name == "4 (Philips Healthcare Gemini-like PET)"
    assert check_cohort(root).summary().endswith("mm, scanner 4 (Philips Healthcare Gemini-like PET)")


def write_bids_pair(root, subject, session, seed, sidecar=True):
    folder = root / f"sub-{subject}" / f"ses-{session}" / "pet"
    short, long, _ = short_and_long(seed=seed)
    for rec, array in (("short", short), ("long", long), ("acstat", long)):
        stem = f"sub-{subject}_ses-{session}_trc-18FFDG_rec-{rec}_pet"
        save_volume(folder / f"{stem}.nii.gz", array, affine_for())
        if sidecar:
            (folder / f"{stem}.json").write_text(json.dumps({"Manufacturer": "Siemens",
                                                             "ManufacturersModelName": "HRRT", "Units": "Bq/mL"}))


def test_bids_cohort_pairs_rec_short_and_rec_long_per_session(tmp_path):
    root = tmp_path / "bids"
    write_bids_pair(root, "01", "M00", seed=0)
    write_bids_pair(root, "01", "M12", seed=1)
    write_bids_pair(root, "02", "M00", seed=2)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    cohort = load_cohort(root)
    assert cohort.layout == "bids"
    assert [s.subject_id for s in cohort.subjects] == [
        "sub-01_ses-M00_trc-18FFDG", "sub-01_ses-M12_trc-18FFDG", "sub-02_ses-M00_trc-18FFDG"]
    assert cohort.subjects[0].short.name == "sub-01_ses-M00_trc-18FFDG_rec-short_pet.nii.gz"
    assert cohort.scanner == {"Manufacturer": "Siemens", "ManufacturersModelName": "HRRT"}
    assert cohort.scanner_name == "Siemens HRRT"
    assert check_cohort(root).ok


def test_bids_missing_partner_and_broken_sidecar_are_reported(tmp_path):
    root = tmp_path / "bids"
    write_bids_pair(root, "01", "M00", seed=0)
    write_bids_pair(root, "02", "M00", seed=1)
    pet = root / "sub-02" / "ses-M00" / "pet"
    (pet / "sub-02_ses-M00_trc-18FFDG_rec-long_pet.nii.gz").unlink()
    (pet / "sub-02_ses-M00_trc-18FFDG_rec-short_pet.json").write_text("{not json")
    problems = check_cohort(root).problems
    assert len(problems) == 3, problems
    assert problems[0] == (f"{pet}/sub-02_ses-M00_trc-18FFDG_rec-long_pet.nii.gz: missing "
                           "(long scan partner of sub-02_ses-M00_trc-18FFDG_rec-short_pet.nii.gz)")
    assert problems[1].startswith(f"{pet}/sub-02_ses-M00_trc-18FFDG_rec-short_pet.json: unreadable JSON")
    assert "only 1 complete subject" in problems[2]


def test_clean_cohort_exits_0_with_a_one_line_summary(tmp_path, capsys):
    root = write_plain_cohort(tmp_path / "clean", n_subjects=3)
    rc, lines = run_cli(["check-cohort", str(root)], capsys)
    assert rc == 0
    assert lines == [f"{root}: 3 subjects (plain layout), matrix 40x40x30, spacing 2x2x2.4 mm"]


def test_must_show_nan_missing_long_and_affine_mismatch_give_exactly_three_lines(tmp_path, capsys):
    root = write_plain_cohort(tmp_path / "cohort", n_subjects=5)
    short, _, _ = short_and_long(seed=1)
    short[10, 10, 10] = np.nan
    save_volume(root / "sub-001" / "short.nii.gz", short, affine_for(), overwrite=True)
    (root / "sub-002" / "long.nii.gz").unlink()
    _, long, _ = short_and_long(seed=3)
    save_volume(root / "sub-003" / "long.nii.gz", long, affine_for(origin=(-40.0, -40.0, -33.6)), overwrite=True)
    rc, lines = run_cli(["check-cohort", str(root)], capsys)
    assert rc == 2
    assert lines == [
        f"{root}/sub-002/long.nii.gz: missing (long scan partner of short.nii.gz)",
        f"{root}/sub-001/short.nii.gz: contains 1 NaN or Inf voxels",
        f"{root}/sub-003/long.nii.gz: affine differs from short.nii.gz (by up to 2.4 mm, tolerance 0.001 mm)",
    ]


def test_every_kind_of_volume_problem_names_its_file(tmp_path):
    root = write_plain_cohort(tmp_path / "cohort", n_subjects=6)
    (root / "sub-000" / "short.nii.gz").write_bytes(b"not a nifti file")
    nib.save(nib.Nifti1Image(np.ones((40, 40, 30, 2), np.float32), affine_for()), root / "sub-001" / "long.nii.gz")
    short, long, _ = short_and_long(seed=2)
    save_volume(root / "sub-002" / "long.nii.gz", long - 0.05 * long.max(), affine_for(), overwrite=True)
    save_volume(root / "sub-003" / "long.nii.gz", long[:, :, :-1], affine_for(), overwrite=True)
    save_volume(root / "sub-004" / "short.nii.gz", np.zeros_like(short), affine_for(), overwrite=True)
    problems = check_cohort(root).problems
    assert len(problems) == 5, problems
    assert problems[0].startswith(f"{root}/sub-000/short.nii.gz: unreadable NIfTI")
    assert problems[1] == f"{root}/sub-001/long.nii.gz: expected a 3D volume, got shape (40, 40, 30, 2)"
    assert problems[2].startswith(f"{root}/sub-002/long.nii.gz: strongly negative values (0.1st percentile -")
    assert problems[3] == f"{root}/sub-003/long.nii.gz: shape 40x40x29 differs from short.nii.gz (40x40x30)"
    assert problems[4] == f"{root}/sub-004/short.nii.gz: no positive activity (99.9th percentile is 0)"


def test_folder_problems(tmp_path, capsys):
    assert check_cohort(tmp_path / "nowhere").problems == [f"{tmp_path}/nowhere: cohort folder not found"]
    a_file = tmp_path / "file.nii.gz"
    a_file.write_bytes(b"")
    assert check_cohort(a_file).problems == [f"{a_file}: not a folder (expected a cohort folder)"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, lines = run_cli(["check-cohort", str(empty)], capsys)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{empty}: no subjects found; expected")
    single = write_plain_cohort(tmp_path / "single", n_subjects=1)
    assert check_cohort(single).problems == [
        f"{single}: only 1 complete subject(s); at least {MIN_SUBJECTS} are needed for a train/validation split"]


def test_a_folder_of_cohorts_gets_a_hint(tmp_path):
    write_plain_cohort(tmp_path / "sim" / "scanner1", n_subjects=1)
    write_plain_cohort(tmp_path / "sim" / "scanner5", n_subjects=1)
    with pytest.raises(PetiteError, match=r"no subjects found; it holds cohorts \(scanner1, scanner5\)"):
        load_cohort(tmp_path / "sim")


def test_load_cohort_raises_the_first_problem_and_counts_the_rest(tmp_path):
    root = write_plain_cohort(tmp_path / "cohort", n_subjects=3)
    (root / "sub-000" / "long.nii.gz").unlink()
    (root / "sub-001" / "short.nii.gz").unlink()
    with pytest.raises(PetiteError) as info:
        load_cohort(root)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{root}/sub-000/long.nii.gz: missing (long scan partner of short.nii.gz)")
    assert message.endswith(f"(and 1 more problems: run 'petite check-cohort {root}')")
