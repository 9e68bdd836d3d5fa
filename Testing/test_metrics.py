"""Metrics: known cases, agreement with scikit-image, head-masked vs whole-volume figures."""
import time

import numpy as np
import pytest
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from PETITELib.errors import PetiteError
from PETITELib.head_mask import head_mask
from PETITELib.metrics import compare_volumes, error_maps, metric_mask, ssim_interior, ssim_map
from phantom_head import SPACING, short_and_long

KEYS = ("psnr", "ssim", "nrmse", "psnr_whole", "ssim_whole", "nrmse_whole")


@pytest.fixture(scope="module")
def pair():
    short, long, _ = short_and_long(seed=5)
    return short, long


def test_identical_volumes_are_perfect(pair):
    _, long = pair
    result = compare_volumes(long, long, spacing=SPACING)
    assert tuple(result) == KEYS
    for suffix in ("", "_whole"):
        assert result["psnr" + suffix] == float("inf")
        assert result["ssim" + suffix] == pytest.approx(1.0, abs=1e-6)
        assert result["nrmse" + suffix] == 0.0


def test_known_additive_error_gives_psnr_by_formula(pair):
    _, long = pair
    sigma = 50.0
    signs = np.where(np.indices(long.shape).sum(axis=0) % 2 == 0, 1.0, -1.0)  # exact MSE sigma^2
    result = compare_volumes(long + sigma * signs, long, spacing=SPACING)
    value_range = float(long.max() - long.min())
    expected = 10 * np.log10(value_range ** 2 / sigma ** 2)
    assert result["psnr_whole"] == pytest.approx(expected, abs=1e-3)
    assert result["psnr"] == pytest.approx(expected, abs=1e-3)
    assert result["nrmse_whole"] == pytest.approx(sigma / value_range, rel=1e-5)


def test_agrees_with_scikit_image(pair):
    short, long = pair
    value_range = float(long.max() - long.min())
    mask = metric_mask(long, SPACING)
    result = compare_volumes(short, long, mask=mask)
    sk_ssim, sk_map = structural_similarity(long, short, data_range=value_range, gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False, full=True)
    interior = ssim_interior(long.shape)
    assert result["psnr_whole"] == pytest.approx(peak_signal_noise_ratio(long, short, data_range=value_range), abs=1e-4)
    assert result["psnr"] == pytest.approx(
        peak_signal_noise_ratio(long[mask], short[mask], data_range=value_range), abs=1e-4)
    assert result["nrmse_whole"] == pytest.approx(normalized_root_mse(long, short, normalization="min-max"), rel=1e-5)
    assert result["ssim_whole"] == pytest.approx(sk_ssim, abs=1e-4)
    assert result["ssim"] == pytest.approx(float(sk_map[mask & interior].mean()), abs=1e-4)
    assert np.abs(ssim_map(short, long, value_range) - sk_map).max() < 1e-3


def test_noise_in_the_air_only_separates_masked_from_whole(pair):
    _, long = pair
    mask = metric_mask(long, SPACING)
    noisy = long.copy()
    rng = np.random.default_rng(0)
    noisy[~mask] += rng.normal(0.0, 0.05 * long.max(), int((~mask).sum())).astype(np.float32)
    result = compare_volumes(noisy, long, spacing=SPACING)
    assert result["psnr"] == float("inf") and result["nrmse"] == 0.0
    assert result["psnr_whole"] < 35.0
    assert result["ssim_whole"] < result["ssim"] - 0.1


def test_head_mask_covers_the_head_and_not_the_air(pair):
    _, long = pair
    mask = head_mask(long, SPACING)
    assert mask[20, 20, 15] and not mask[0, 0, 0]
    assert 0.1 < mask.mean() < 0.5
    np.testing.assert_array_equal(head_mask(long * 7.3, SPACING), mask)  # scale-invariant
    assert metric_mask(long, SPACING).sum() > mask.sum()  # dilated for evaluation


def test_head_mask_fills_holes_even_where_the_head_leaves_the_field_of_view():
    ring = np.zeros((40, 40, 30), dtype=np.float32)
    x, y = np.ogrid[:40, :40]
    radius = np.hypot(x - 20, y - 20)
    ring[(radius > 10) & (radius < 15)] = 1000.0  # a cylinder open at both ends: a 3D fill misses it
    mask = head_mask(ring, SPACING)
    assert mask[20, 20, 0] and mask[20, 20, 15]


def test_error_maps_are_signed_and_absolute(pair):
    short, long = pair
    signed, absolute = error_maps(short, long)
    np.testing.assert_allclose(signed, short - long)
    np.testing.assert_array_equal(absolute, np.abs(signed))
    assert signed.dtype == np.float32


def test_bad_inputs_raise_one_line_errors(pair):
    short, long = pair
    with pytest.raises(PetiteError, match="ref.nii.gz: cannot compare shapes"):
        compare_volumes(short[:-1], long, name="ref.nii.gz")
    with pytest.raises(PetiteError, match="constant"):
        compare_volumes(long, np.ones_like(long))
    with pytest.raises(PetiteError, match="smaller than the 11-voxel SSIM window"):
        compare_volumes(long[:, :, :8], long[:, :, :8])
    with pytest.raises(PetiteError, match="head mask is empty"):
        compare_volumes(long, long, mask=np.zeros(long.shape, dtype=bool))


def test_fast_enough_for_a_full_size_volume():
    rng = np.random.default_rng(1)
    shape = (192, 192, 136)
    grid = np.indices(shape, dtype=np.float32)
    head = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, (96, 96, 68), (70, 85, 60))) < 1
    reference = (head * 1000.0).astype(np.float32)
    prediction = reference + rng.normal(0, 30, shape).astype(np.float32)
    start = time.perf_counter()
    compare_volumes(prediction, reference, spacing=(1.21875,) * 3)
    assert time.perf_counter() - start < 10.0  # about 1.5 s on 2 busy cores; generous for shared CI
