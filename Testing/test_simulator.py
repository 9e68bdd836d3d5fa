"""The simulator: Table 4 geometry, reproducibility, overwrite safety, noise levels, projector and OSEM."""
import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from PETITELib.cli import main
from PETITELib.data.cohort import check_cohort
from PETITELib.data.scanners import SCANNERS, get_scanner, parse_scanner_list
from PETITELib.data.simulator import simulate_cohort, simulate_scan
from PETITELib.data.simulator.anatomy import build_subject, sample_subject
from PETITELib.data.simulator.calibration import measure_surrogate
from PETITELib.data.simulator.attenuation import (attenuation_factors, estimated_mu_map, filtered_back_projection,
                                                   line_integrals)
from PETITELib.data.simulator.detectors import axial_sensitivity, detector_efficiencies
from PETITELib.data.simulator.physics import psf_blur
from PETITELib.data.simulator.projector import SliceGeometry, forward_project, scanner_geometry, system_matrix
from PETITELib.data.simulator.reconstruction import Reconstructor
from PETITELib.data.simulator.template import load_head_template
from PETITELib.errors import Cancelled, PetiteError
from PETITELib.progress import CancelToken

TABLE_4 = {  # the paper's Table 4: matrix, spacing (mm), manufacturer, institution
    1: ((192, 192, 136), (1.21875, 1.21875, 1.21875), "Siemens", "Univ of California"),
    2: ((192, 192, 128), (1.21875, 1.21875, 1.21875), "Siemens", "Univ of California"),
    3: ((224, 224, 81), (1.01821, 1.01821, 2.02699), "Siemens", "Univ of California"),
    4: ((128, 128, 90), (2.0, 2.0, 2.0), "Philips Healthcare", "OHSU"),
    5: ((128, 128, 63), (2.05941, 2.05941, 2.425), "Siemens", "UCSD"),
}
FILES = ("short", "long", "truth", "activity", "labels")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Fast-mode cohort: scanners 1 and 5, two subjects, seed 1 (plus the progress events)."""
    out = tmp_path_factory.mktemp("sim") / "cohort"
    events = []
    folders = simulate_cohort(out, scanners=(1, 5), subjects=2, seed=1, mode="fast", progress=events.append)
    return out, folders, events


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_scanner_registry_is_table_4():
    assert sorted(SCANNERS) == [1, 2, 3, 4, 5]
    for scanner_id, (matrix, spacing, manufacturer, institution) in TABLE_4.items():
        scanner = get_scanner(scanner_id)
        assert (scanner.matrix, scanner.spacing) == (matrix, spacing)
        assert (scanner.manufacturer, scanner.institution) == (manufacturer, institution)
        centre = scanner.affine() @ np.array([*(np.array(matrix) - 1) / 2.0, 1.0])
        np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert parse_scanner_list(" 5,1,5 ") == (1, 5)
    with pytest.raises(PetiteError, match="--scanners: unknown scanner '7'"):
        parse_scanner_list("1,7")
    with pytest.raises(PetiteError, match="unknown scanner"):
        get_scanner(0)


def test_cohort_layout_shapes_and_spacings_are_table_4(cohort):
    out, folders, events = cohort
    assert folders == [out / "scanner1", out / "scanner5"]
    assert (out / "montage.png").read_bytes().startswith(b"\x89PNG")
    for scanner_id in (1, 5):
        matrix, spacing = TABLE_4[scanner_id][:2]
        for subject in ("sub-001", "sub-002"):
            for name in FILES:
                image = nib.load(str(out / f"scanner{scanner_id}" / subject / f"{name}.nii.gz"))
                assert image.shape == matrix
                np.testing.assert_allclose(image.header.get_zooms(), spacing, rtol=0, atol=1e-6)
                assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
                assert image.get_data_dtype() == (np.uint8 if name == "labels" else np.float32)
        record = json.loads((out / f"scanner{scanner_id}" / "scanner.json").read_text())
        assert record["matrix"] == list(matrix) and record["spacing"] == list(spacing)
        assert record["id"] == scanner_id and record["seed"] == 1
        assert [s["subject"] for s in record["subjects"]] == ["sub-001", "sub-002"]
        assert set(record["labels"]) == {str(k) for k in range(12)}
        check = check_cohort(out / f"scanner{scanner_id}")  # the cohort reader accepts the output
        assert check.ok, check.problems
        assert check.cohort.scanner_name.startswith(f"{scanner_id} (")
    assert events[-1].step == events[-1].total == 4


def test_short_scan_is_noisier_than_long_in_white_matter(cohort):
    out = cohort[0]
    for scanner_id in (1, 5):
        record = json.loads((out / f"scanner{scanner_id}" / "scanner.json").read_text())
        noise = record["white_matter_noise_mean"]  # the surrogate's level is the full mode's measured one
        assert noise["short"]["noise"] == pytest.approx(get_scanner(scanner_id).surrogate_short_noise, rel=0.3)
        assert 0.02 < noise["long"]["noise"] < noise["short"]["noise"] / 1.8
    truth = nib.load(str(out / "scanner5" / "sub-001" / "truth.nii.gz")).get_fdata()
    labels = np.asarray(nib.load(str(out / "scanner5" / "sub-001" / "labels.nii.gz")).dataobj)
    grey, white = truth[(labels >= 1) & (labels <= 7)].mean(), truth[labels == 8].mean()
    assert 1000 < white < grey < 40000  # Bq/mL, grey matter hotter than white matter


def test_same_seed_gives_byte_identical_files_also_in_parallel(cohort, tmp_path):
    out = cohort[0]
    again = tmp_path / "again"
    simulate_cohort(again, scanners=(5,), subjects=2, seed=1, mode="fast", jobs=2)
    for relative in _files(again / "scanner5"):
        expected = (out / "scanner5" / relative).read_bytes()
        assert (again / "scanner5" / relative).read_bytes() == expected, relative


def test_different_seeds_differ_and_subjects_differ():
    first = simulate_scan(5, subject_index=0, seed=1, mode="fast")
    other_seed = simulate_scan(5, subject_index=0, seed=2, mode="fast")
    other_subject = simulate_scan(5, subject_index=1, seed=1, mode="fast")
    assert first.short.shape == other_seed.short.shape == TABLE_4[5][0]
    for name in ("short", "long", "truth"):
        assert not np.array_equal(getattr(first, name), getattr(other_seed, name))
        assert not np.array_equal(getattr(first, name), getattr(other_subject, name))
    np.testing.assert_array_equal(first.short, simulate_scan(5, 0, 1, "fast").short)


def test_refuses_to_overwrite_and_replaces_only_simulator_output(cohort, tmp_path):
    out = cohort[0]
    with pytest.raises(PetiteError, match=r"scanner1: already exists \(use --overwrite"):
        simulate_cohort(out, scanners=(1, 5), subjects=1, seed=1, mode="fast")
    target = tmp_path / "cohort"
    simulate_cohort(target, scanners=(5,), subjects=1, seed=3, mode="fast")
    (target / "scanner5" / "notes.txt").write_text("mine")
    with pytest.raises(PetiteError, match="notes.txt, which petite simulate did not write"):
        simulate_cohort(target, scanners=(5,), subjects=1, seed=4, mode="fast", overwrite=True)
    (target / "scanner5" / "notes.txt").unlink()
    simulate_cohort(target, scanners=(5,), subjects=1, seed=4, mode="fast", overwrite=True)
    assert json.loads((target / "scanner5" / "scanner.json").read_text())["seed"] == 4


def _interrupted_after_first_subject(out, scanners):
    """Run simulate_cohort(out, scanners, subjects=2, seed=1, fast) and cancel it once sub-001 is
    written on every scanner; returns the cohort's sub-001 files' inode and mtime."""
    token = CancelToken()

    def progress(event):  # the last scan of sub-001 (scanner 5) is reported: stop before sub-002
        if event.message == "sub-001 scanner5":
            token.cancel()

    with pytest.raises(Cancelled):
        simulate_cohort(out, scanners=scanners, subjects=2, seed=1, mode="fast", progress=progress, cancel=token)
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("sub-001/*.nii.gz"))}


@pytest.mark.parametrize("scanners,jobs", [((1, 5), 1), ((5,), 2)])
def test_an_interrupted_run_resumes_to_the_same_files_without_redoing_finished_subjects(cohort, tmp_path,
                                                                                       scanners, jobs):
    out = tmp_path / "cohort"
    first = _interrupted_after_first_subject(out, scanners)  # then resumed in this process or in a pool
    assert len(first) == len(scanners) * len(FILES) and not (out / "scanner5" / "scanner.json").exists()
    record = json.loads((out / "scanner5" / ".simulate-progress.json").read_text())
    assert (record["mode"], record["seed"], sorted(record["finished"])) == ("fast", 1, ["sub-001"])
    (out / "scanner5" / "sub-002").mkdir(exist_ok=True)  # a subject cut off half-written is redone
    (out / "scanner5" / "sub-002" / "short.nii.gz").write_bytes(b"cut off")
    with pytest.raises(PetiteError, match=r"already exists \(use --overwrite to replace it, or "
                                          r"--resume to continue that interrupted run\)"):
        simulate_cohort(out, scanners=scanners, subjects=2, seed=1, mode="fast")
    events = []
    simulate_cohort(out, scanners=scanners, subjects=2, seed=1, mode="fast", jobs=jobs, resume=True,
                    progress=events.append)
    assert "1 subject(s) kept from the interrupted run" in events[0].message
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first} == first  # not written again
    for name in (f"scanner{k}" for k in scanners):  # a scanner's files do not depend on the others
        expected = cohort[0] / name
        assert _files(out / name) == _files(expected)
        for relative in _files(expected):
            assert (out / name / relative).read_bytes() == (expected / relative).read_bytes(), relative
    assert not (out / "scanner5" / ".simulate-progress.json").exists()


def test_resume_refuses_another_seed_and_a_finished_folder_unless_overwrite(tmp_path):
    out = tmp_path / "cohort"
    _interrupted_after_first_subject(out, (5,))
    with pytest.raises(PetiteError, match=r"scanner5: holds an unfinished simulation with seed 1 in fast mode; "
                                          r"resume it with that --seed and --mode, or use --overwrite"):
        simulate_cohort(out, scanners=(5,), subjects=2, seed=2, mode="fast", resume=True)
    simulate_cohort(out, scanners=(5,), subjects=1, seed=2, mode="fast", resume=True, overwrite=True)
    assert json.loads((out / "scanner5" / "scanner.json").read_text())["seed"] == 2
    with pytest.raises(PetiteError, match=r"scanner5: already exists \(use --overwrite to replace it\)"):
        simulate_cohort(out, scanners=(5,), subjects=1, seed=2, mode="fast", resume=True)


def test_bad_arguments_and_cancel(tmp_path):
    with pytest.raises(PetiteError, match="--subjects"):
        simulate_cohort(tmp_path / "x", scanners=(5,), subjects=0, mode="fast")
    with pytest.raises(PetiteError, match="--mode"):
        simulate_cohort(tmp_path / "x", scanners=(5,), subjects=1, mode="slow")
    with pytest.raises(PetiteError, match="--seed"):
        simulate_scan(5, seed=-1)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        simulate_cohort(tmp_path / "y", scanners=(5,), subjects=1, mode="fast", cancel=token)


def test_cli_simulate_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["simulate", "--out", str(out), "--scanners", "5", "--subjects", "1", "--seed", "2",
            "--mode", "fast"]
    assert main(args) == 0
    assert "white-matter noise short" in capsys.readouterr().out
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"petite: error: {out / 'scanner5'}: already exists (use --overwrite to replace it)"
    assert main(args + ["--resume"]) == 2  # a finished run has nothing to resume
    assert capsys.readouterr().err.strip() == error
    assert main(args[:4] + ["9"]) == 2
    assert "--scanners: unknown scanner '9'" in capsys.readouterr().err


def test_ad_like_pattern_lowers_posterior_cingulate_uptake():
    template = load_head_template(2)
    rng = np.random.default_rng(0)
    normal = dataclasses.replace(sample_subject(rng, 0), ad_like=False, ad_severity=0.0, ad_asymmetry=0.0)
    ad = dataclasses.replace(normal, ad_like=True, ad_severity=1.0)
    normal_head, ad_head = build_subject(template, normal), build_subject(template, ad)
    cingulate, frontal = normal_head.labels == 5, normal_head.labels == 1
    ratio = lambda head: head.suv[cingulate].mean() / head.suv[frontal].mean()  # noqa: E731
    assert ratio(ad_head) < 0.9 * ratio(normal_head)


def test_projector_weights_are_exact_pixel_area_fractions():
    geometry = SliceGeometry(n_pixels=16, pixel_mm=2.0, n_bins=20, bin_mm=1.7, n_angles=7)
    matrix = system_matrix(geometry, range(7)).toarray().reshape(7, 20, -1)
    centres = geometry.pixel_centres()
    inside = np.argwhere(geometry.inside)
    offsets = (np.arange(400) + 0.5) / 400 - 0.5
    for column in (0, 37, 100):
        x, y = centres[inside[column, 0]], centres[inside[column, 1]]
        for view, theta in enumerate(geometry.angles):
            points = ((x + offsets[:, None] * 2.0) * np.cos(theta)
                      + (y + offsets[None, :] * 2.0) * np.sin(theta))
            bins = np.floor(points / 1.7 + 10).astype(int).ravel()
            expected = np.bincount(bins[(bins >= 0) & (bins < 20)], minlength=20) / bins.size
            np.testing.assert_allclose(matrix[view, :, column], expected, atol=3e-3)
    stack = np.random.default_rng(0).random((matrix.shape[2], 3)).astype(np.float32)
    np.testing.assert_allclose(forward_project(geometry, stack).reshape(-1, 3),
                               system_matrix(geometry, range(7)) @ stack, rtol=1e-5)


def _disc_scanner(algorithm, **reconstruction):
    """A small test scanner (48 x 48 x 3 at 2 mm, 24 views) reconstructing with ``algorithm``."""
    scanner = get_scanner(5)
    recon = dataclasses.replace(scanner.reconstruction, algorithm=algorithm, iterations=15, subsets=4,
                                postfilter_fwhm_mm=0.0, fore_axial_blur_mm=0.0, **reconstruction)
    return dataclasses.replace(scanner, matrix=(48, 48, 3), spacing=(2.0, 2.0, 2.0), n_angles=24,
                               reconstruction=recon)


@pytest.mark.parametrize("algorithm,options", [
    ("op-osem", {}), ("psf-osem", {"psf_model_fwhm_mm": (4.0, 4.0)}),
    ("ramla-blob", {"blob_radius_voxels": 2.0, "blob_alpha": 10.4, "relaxation": 1.0}),
    ("fore-aw-osem", {})])
def test_every_reconstruction_of_noiseless_data_recovers_uniform_activity(algorithm, options):
    scanner = _disc_scanner(algorithm, **options)
    geometry = scanner_geometry(scanner)
    c = geometry.pixel_centres()
    disc = (c[:, None] ** 2 + c[None, :] ** 2 <= 30.0 ** 2)
    activity = np.repeat(geometry.pack(disc[:, :, None] * np.float32(5000.0)), 3, axis=1)  # Bq/mL
    mu = geometry.pack(np.repeat(disc[:, :, None], 3, axis=2) * np.float32(0.00975))
    factor = (1e-3 * attenuation_factors(geometry, mu)).astype(np.float32)
    projection = forward_project(geometry, activity)
    if algorithm == "psf-osem":
        projection = psf_blur(projection, (4.0, 4.0), geometry.bin_mm, 2.0)
    signal = 300.0 * factor * projection
    background = None if algorithm == "fore-aw-osem" else np.full_like(factor, 0.2 * float(signal.mean()))
    counts = signal if background is None else signal + background
    image = geometry.unpack(Reconstructor(scanner, geometry, factor).reconstruct(
        counts.astype(np.float32), 300.0, background))
    centre = c[:, None] ** 2 + c[None, :] ** 2 <= 20.0 ** 2
    np.testing.assert_allclose(image[centre].mean(), 5000.0, rtol=0.03)
    assert image[centre].std() / 5000.0 < 0.05
    assert image[~disc].mean() < 0.06 * 5000.0


def test_filtered_back_projection_and_segmentation_recover_a_mu_disc():
    scanner = _disc_scanner("op-osem")
    geometry = scanner_geometry(scanner)
    c = geometry.pixel_centres()
    disc = np.repeat((c[:, None] ** 2 + c[None, :] ** 2 <= 30.0 ** 2)[:, :, None], 3, axis=2)
    mu = disc * np.float32(0.00975)
    image = geometry.unpack(filtered_back_projection(geometry, line_integrals(geometry, geometry.pack(mu)), 4))
    inner = np.repeat((c[:, None] ** 2 + c[None, :] ** 2 <= 24.0 ** 2)[:, :, None], 3, axis=2)
    np.testing.assert_allclose(image[inner].mean(), 0.00975, rtol=0.03)
    rng = np.random.default_rng(0)
    transmission = dataclasses.replace(scanner, corrections=dataclasses.replace(
        scanner.corrections, transmission_counts=5000.0, mu_smoothing_mm=4.0))
    estimate = estimated_mu_map(transmission, geometry, mu, rng)
    assert set(np.unique(estimate)) <= {0.0, np.float32(0.0096)}  # two classes: air and soft tissue
    assert (estimate[inner] == np.float32(0.0096)).all() and (estimate[~disc] == 0).mean() > 0.97


def test_detector_model_sensitivity_gaps_and_normalisation_errors():
    hrrt, hr_plus = get_scanner(1), get_scanner(5)
    profile = axial_sensitivity(hr_plus)
    assert profile.max() == 1.0 and profile[0] < 0.1 and profile[len(profile) // 2] == 1.0
    assert axial_sensitivity(hrrt).min() > 0.4  # the 252 mm FOV is longer than the 166 mm grid
    geometry = scanner_geometry(hrrt)
    efficiencies = detector_efficiencies(np.random.default_rng(0), hrrt, geometry)
    assert efficiencies.true.shape == (hrrt.n_angles, hrrt.matrix[0], hrrt.matrix[2])
    gaps = efficiencies.true == 0
    assert 0.02 < gaps.mean() < 0.3 and (efficiencies.measured[gaps] == 0).all()
    ratio = efficiencies.measured[~gaps] / efficiencies.true[~gaps]
    assert 0.005 < ratio.std() < 0.1  # measured normalisation is close to, not equal to, the truth
    exact = dataclasses.replace(hrrt, corrections=dataclasses.replace(
        hrrt.corrections, normalisation_crystal_error=0.0, normalisation_block_residual=0.0))
    perfect = detector_efficiencies(np.random.default_rng(0), exact, geometry)
    np.testing.assert_allclose(perfect.measured, perfect.true, rtol=0.02)  # only the 0.5 % plane errors remain


@pytest.mark.slow
def test_full_mode_scan_and_the_surrogate_agree_on_the_smallest_scanner():
    scanner = get_scanner(5)
    scan = simulate_scan(5, subject_index=0, seed=1, mode="full")
    assert scan.short.shape == scan.long.shape == scan.truth.shape == scan.activity.shape == TABLE_4[5][0]
    noise = scan.info["white_matter"]
    assert noise["long"]["noise"] < noise["short"]["noise"] / 1.8
    brain = (scan.labels >= 1) & (scan.labels <= 8)
    np.testing.assert_allclose(scan.long[brain].mean(), scan.truth[brain].mean(), rtol=0.05)
    full = measure_surrogate(scanner, [scan])  # what scanners.py says the surrogate imitates
    np.testing.assert_allclose(full["surrogate_fwhm_mm"], scanner.surrogate_fwhm_mm, rtol=0.2)
    np.testing.assert_allclose(full["surrogate_short_noise"], scanner.surrogate_short_noise, rtol=0.3)
    np.testing.assert_allclose(full["surrogate_noise_fwhm_mm"], scanner.surrogate_noise_fwhm_mm, rtol=0.3)
    fast = measure_surrogate(scanner, [simulate_scan(5, subject_index=0, seed=1, mode="fast")])
    np.testing.assert_allclose(fast["surrogate_fwhm_mm"], scanner.surrogate_fwhm_mm, rtol=0.15)
    np.testing.assert_allclose(fast["surrogate_short_noise"], scanner.surrogate_short_noise, rtol=0.2)


def test_row_action_order_visits_every_view_once_far_apart():
    from PETITELib.data.simulator.reconstruction import row_action_order

    for n in (64, 96, 112):
        order = row_action_order(n)
        assert sorted(order) == list(range(n))
        steps = [min((b - a) % n, (a - b) % n) for a, b in zip(order, order[1:])]
        assert min(steps) >= n // 4  # successive views at least 45 degrees apart
