"""Data pipeline: padding, normalisation round trip, seeded crops that also cover air, the split."""
import numpy as np
import pytest
import torch

from PETITELib.data.cohort import Subject, load_cohort
from PETITELib.data.pipeline import (CropDataset, pad_to_roi, prepare_input, prepare_subject, prepare_subjects,
                                     restore_output, split_subjects, unpad)
from PETITELib.errors import PetiteError
from PETITELib.head_mask import head_mask
from PETITELib.metrics import compare_volumes
from PETITELib.nifti_io import load_volume, save_volume
from phantom_head import SPACING, affine_for, write_plain_cohort, write_plain_subject


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    """Three 40x40x30 subjects (every axis below 64) in a plain cohort."""
    return load_cohort(write_plain_cohort(tmp_path_factory.mktemp("small"), n_subjects=3))


@pytest.fixture(scope="module")
def wide_subject(tmp_path_factory):
    """One 96x96x63 subject (head in the middle, much air around, 63 slices like scanner 5)."""
    folder = write_plain_subject(tmp_path_factory.mktemp("wide") / "sub-wide", seed=4, shape=(96, 96, 63))
    return prepare_subject(Subject("sub-wide", folder / "short.nii.gz", folder / "long.nii.gz"))


def test_pad_records_padding_and_unpad_inverts_it():
    array = np.ones((70, 64, 63), dtype=np.float32)
    padded, padding = pad_to_roi(array)
    assert padded.shape == (70, 64, 64) and padding == ((0, 0), (0, 0), (0, 1))
    assert padded[:, :, -1].max() == 0.0
    np.testing.assert_array_equal(unpad(padded[None, None], padding)[0, 0], array)
    small, padding = pad_to_roi(np.ones((40, 40, 30), np.float32))
    assert small.shape == (64, 64, 64) and padding == ((12, 12), (12, 12), (17, 17))


def test_prepared_subject_is_normalised_padded_and_restorable(small_cohort):
    subject = small_cohort.subjects[0]
    prepared = prepare_subject(subject)
    assert prepared.short.shape == prepared.long.shape == (1, 64, 64, 64)
    assert prepared.short.dtype == np.float32 and prepared.padding == ((12, 12), (12, 12), (17, 17))
    assert 0.5 < np.percentile(prepared.long, 99.9) < 1.0  # the head mostly in 0..1
    original_long = load_volume(subject.long).array
    restored = restore_output(torch.from_numpy(prepared.long[None]), prepared.factor, prepared.padding)
    np.testing.assert_allclose(restored, original_long, rtol=1e-6, atol=1e-6 * float(original_long.max()))
    assert prepared.metric_mask.shape == original_long.shape


def test_inference_input_uses_the_short_scan_only(small_cohort):
    short = load_volume(small_cohort.subjects[1].short)
    network_input = prepare_input(short.array, short.spacing)
    assert network_input.array.shape == (1, 64, 64, 64)
    np.testing.assert_allclose(restore_output(network_input.array, network_input.factor, network_input.padding),
                               short.array, rtol=1e-6, atol=1e-3)


def test_mismatched_pair_is_refused_naming_the_long_scan(tmp_path):
    folder = write_plain_subject(tmp_path / "sub-x", seed=1)
    long = load_volume(folder / "long.nii.gz")
    save_volume(folder / "long.nii.gz", long.array, affine_for(origin=(0.0, 0.0, 0.0)), overwrite=True)
    with pytest.raises(PetiteError, match=r"sub-x/long.nii.gz: affine differs from short.nii.gz"):
        prepare_subject(Subject("sub-x", folder / "short.nii.gz", folder / "long.nii.gz"))


def test_crops_are_64_cubes_and_reproducible_with_any_worker_count(small_cohort):
    prepared = prepare_subjects(small_cohort.subjects)
    dataset = CropDataset(prepared, samples_per_subject=2, seed=7)
    assert len(dataset) == 6
    batches = [next(iter(torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=workers)))
               for workers in (0, 2)]
    assert batches[0]["short"].shape == batches[0]["long"].shape == (3, 1, 64, 64, 64)
    for key in ("short", "long"):
        assert torch.equal(batches[0][key], batches[1][key])


def test_crop_positions_depend_on_seed_and_epoch(wide_subject):
    dataset = CropDataset([wide_subject], samples_per_subject=20, seed=1)
    first = [dataset.crop_origin(i) for i in range(len(dataset))]
    assert first == [dataset.crop_origin(i) for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert first != [dataset.crop_origin(i) for i in range(len(dataset))]
    assert first != [CropDataset([wide_subject], 20, seed=2).crop_origin(i) for i in range(20)]
    sample = dataset[3]
    assert sample["short"].shape == (1, 64, 64, 64) and sample["short"].dtype == torch.float32


def test_crop_centres_cover_the_air_and_the_head_edge_not_only_the_brain(wide_subject):
    head = head_mask(wide_subject.long[0], SPACING)
    sampling = np.zeros(head.size, bool)
    sampling[wide_subject.head_voxels] = True
    assert sampling.reshape(head.shape)[head].all() and sampling.sum() > 1.5 * head.sum()  # head + edge
    head_centres = CropDataset([wide_subject], 400, seed=0, head_fraction=1.0)
    flat_centres = [np.ravel_multi_index(head_centres.crop_centre(i)[1], head.shape) for i in range(400)]
    assert sampling[flat_centres].all()
    assert 0.3 < head.flat[flat_centres].mean() < 0.9  # inside the head, and around its edge
    mixed = CropDataset([wide_subject], 400, seed=0, head_fraction=0.5)
    in_air = [not sampling[np.ravel_multi_index(mixed.crop_centre(i)[1], head.shape)] for i in range(400)]
    air_fraction = 1 - sampling.mean()
    assert np.mean(in_air) == pytest.approx(0.5 * air_fraction, abs=0.08)
    assert np.mean(in_air) > 0.2
    starts = np.array([mixed.crop_origin(i)[1] for i in range(400)])
    assert (starts.min(axis=0) == 0).all() and (starts.max(axis=0) == np.array(head.shape) - 64).all()


def test_split_is_deterministic_disjoint_and_order_independent():
    subjects = [Subject(f"sub-{i:02d}", None, None) for i in range(25)]
    train, val = split_subjects(subjects, 15, seed=3)
    assert len(train) == 10 and len(val) == 15
    assert {s.subject_id for s in train}.isdisjoint(s.subject_id for s in val)
    assert (train, val) == split_subjects(subjects, 15, seed=3)
    reversed_train, reversed_val = split_subjects(subjects[::-1], 15, seed=3)
    assert sorted(s.subject_id for s in reversed_val) == sorted(s.subject_id for s in val)
    assert split_subjects(subjects, 15, seed=4)[1] != val
    assert len(split_subjects(subjects, 0.2, seed=0)[1]) == 5


@pytest.mark.parametrize("n_val, message", [(0, "between 1 and 2"), (3, "between 1 and 2"),
                                            (1.5, "--val-subjects 1.5: a validation fraction must be between 0 and 1")])
def test_split_refuses_impossible_sizes(n_val, message):
    subjects = [Subject(f"s{i}", None, None) for i in range(3)]
    with pytest.raises(PetiteError, match=message):
        split_subjects(subjects, n_val, seed=0)
    with pytest.raises(PetiteError, match="at least 2"):
        split_subjects(subjects[:1], 1, seed=0)


def test_prepared_subjects_are_whole_volumes_that_give_input_unit_metrics(small_cohort):
    prepared = prepare_subjects(small_cohort.subjects[:2])
    assert [subject.subject_id for subject in prepared] == ["sub-000", "sub-001"]
    subject = prepared[0]
    assert subject.short.shape == subject.long.shape == (1, 64, 64, 64)  # whole volume, padded, channel first
    reference = load_volume(small_cohort.subjects[0].long).array
    prediction = restore_output(torch.from_numpy(subject.long[None]), subject.factor, subject.padding)  # a perfect "network"
    metrics = compare_volumes(prediction, reference, mask=subject.metric_mask)
    assert metrics["psnr"] > 100 and metrics["ssim"] == pytest.approx(1.0, abs=1e-6)
