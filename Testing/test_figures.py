"""Figures: montage and comparison PNGs are written atomically, deterministically, and look right."""
import matplotlib.image
import numpy as np
import pytest

from PETITELib.errors import PetiteError
from PETITELib.figures import central_slice, save_comparison_figure, save_montage
from phantom_head import SPACING, short_and_long

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scans():
    short, long, truth = short_and_long(seed=3)
    return short, long, truth


def test_central_slice_takes_the_middle_plane():
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    assert central_slice(volume, 2).shape == (4, 5)
    np.testing.assert_array_equal(central_slice(volume, 0), volume[2])
    np.testing.assert_array_equal(central_slice(volume, 1), volume[:, 2, :])


def test_montage_png_is_deterministic_and_never_silently_replaced(tmp_path, scans):
    short, long, truth = scans
    rows = [("subject 1", [short, long, truth]), ("subject 2", [short, None, truth])]
    path = save_montage(tmp_path / "montage.png", rows, ["short", "long", "truth"], spacing=SPACING)
    first = path.read_bytes()
    assert first.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300
    with pytest.raises(PetiteError, match="already exists"):
        save_montage(path, rows, ["short", "long", "truth"], spacing=SPACING)
    save_montage(path, rows, ["short", "long", "truth"], spacing=SPACING, overwrite=True)
    assert path.read_bytes() == first
    assert not list(tmp_path.glob("*.tmp"))


def test_montage_rejects_rows_that_do_not_match_the_titles(tmp_path, scans):
    with pytest.raises(PetiteError, match="montage.png: row 'a' has 1 volumes for 2 columns"):
        save_montage(tmp_path / "montage.png", [("a", [scans[0]])], ["one", "two"])
    with pytest.raises(PetiteError, match="expected a 3D volume"):
        save_montage(tmp_path / "montage.png", [("a", [scans[0][..., 0]])], ["one"])


def test_comparison_figure_shows_a_diverging_error_map(tmp_path, scans):
    short, long, _ = scans
    error = np.ones_like(long)
    error[: long.shape[0] // 2] = -1.0  # negative half (blue) and positive half (red)
    reconstruction = long + error
    path = save_comparison_figure(tmp_path / "cmp.png", short, reconstruction, long, error,
                                  spacing=SPACING, title="sub-003")
    rgb = matplotlib.image.imread(path)[..., :3]
    red = (rgb[..., 0] > 0.5) & (rgb[..., 2] < 0.3)
    blue = (rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.3)
    assert red.sum() > 500 and blue.sum() > 500


def test_comparison_figure_requires_volumes_of_one_shape(tmp_path, scans):
    short, long, _ = scans
    with pytest.raises(PetiteError, match=r"cmp.png: volumes to compare differ in shape"):
        save_comparison_figure(tmp_path / "cmp.png", short, long[:-1], long, long - short, SPACING)
    assert not (tmp_path / "cmp.png").exists()
