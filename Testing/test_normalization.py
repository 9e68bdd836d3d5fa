"""Normalisation: a factor from the short scan that matches the long scan's and scales exactly."""
import numpy as np
import pytest

from PETITELib.data.normalization import denormalize, normalization_factor, normalize
from PETITELib.errors import PetiteError
from phantom_head import SPACING, short_and_long

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def subjects():
    return [short_and_long(seed=seed)[:2] for seed in SEEDS]


def test_short_and_long_factors_agree_within_one_percent(subjects):
    for short, long in subjects:
        ratio = normalization_factor(short, SPACING) / normalization_factor(long, SPACING)
        assert abs(ratio - 1) < 0.01


def test_a_noisy_short_scan_breaks_max_scaling_but_not_the_robust_factor(subjects):
    """Why not the paper's per-volume max: the short scan's max is set by its noise."""
    max_errors = [abs(short.max() / long.max() - 1) for short, long in subjects]
    robust_errors = [abs(normalization_factor(s, SPACING) / normalization_factor(l, SPACING) - 1)
                     for s, l in subjects]
    assert min(max_errors) > 0.1
    assert max(robust_errors) < min(max_errors) / 5


def test_factor_scales_exactly_with_the_input(subjects):
    short, _ = subjects[0]
    factor = normalization_factor(short, SPACING)
    assert normalization_factor(short * np.float32(4.0), SPACING) == 4.0 * factor  # bit-exact for 2^k
    assert normalization_factor(short * np.float32(3.7), SPACING) == pytest.approx(3.7 * factor, rel=1e-5)


def test_factor_ignores_how_much_air_surrounds_the_head(subjects):
    short, _ = subjects[1]
    wider_field_of_view = np.pad(short, 12)
    assert normalization_factor(wider_field_of_view, SPACING) == pytest.approx(
        normalization_factor(short, SPACING), rel=0.01)


def test_normalised_head_lies_mostly_in_zero_one_and_inverts_exactly(subjects):
    short, long = subjects[2]
    factor = normalization_factor(short, SPACING)
    normalised_long = normalize(long, factor)
    assert 0.5 < np.percentile(normalised_long, 99.9) < 1.0
    restored = denormalize(normalize(short, factor), factor)
    np.testing.assert_allclose(restored, short, rtol=1e-6, atol=1e-6 * float(short.max()))
    assert restored.dtype == np.float32


def test_empty_scan_is_a_one_line_error_naming_the_file():
    with pytest.raises(PetiteError, match=r"^s01/short.nii.gz: no positive activity found"):
        normalization_factor(np.zeros((20, 20, 20), np.float32), name="s01/short.nii.gz")
