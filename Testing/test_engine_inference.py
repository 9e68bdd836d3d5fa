"""Sliding-window inference: tiling, padding of short axes, Gaussian blending, cancel, devices."""
import numpy as np
import pytest
import torch

from PETITELib.engine.devices import select_device
from PETITELib.engine.inference import reconstruct_volume, sliding_window_predict, tile_count
from PETITELib.errors import Cancelled, PetiteError
from PETITELib.progress import CancelToken

CPU = torch.device("cpu")


def test_tile_count_is_what_monai_visits_and_progress_counts_every_tile():
    for shape, overlap in (((192, 192, 136), 0.25), ((128, 128, 63), 0.25), ((64, 64, 64), 0.5),
                           ((70, 66, 63), 0.0)):
        tiles, events = [], []
        sliding_window_predict(lambda x: tiles.append(len(x)) or x, np.zeros(shape, np.float32),
                               device=CPU, overlap=overlap, batch_size=4, progress=events.append)
        assert sum(tiles) == tile_count(shape, 64, overlap)
        assert events[-1].step == events[-1].total == sum(tiles) and len(events) == len(tiles)
    assert tile_count((192, 192, 136)) == 4 * 4 * 3  # a scanner-1 volume at the default overlap


def test_identity_model_returns_the_volume_for_any_shape_including_axes_below_64():
    rng = np.random.default_rng(0)
    for shape in ((70, 66, 63), (64, 64, 64), (100, 80, 40)):
        volume = rng.random(shape, dtype=np.float32)
        out = sliding_window_predict(lambda x: x, volume, device=CPU, overlap=0.25, batch_size=3)
        assert out.shape == shape and out.dtype == np.float32
        np.testing.assert_allclose(out, volume, rtol=1e-5, atol=1e-6)


def test_tiles_are_blended_not_pasted():
    """A model adding a per-tile constant: overlapping tiles average, so values lie between."""
    counter = {"n": 0}

    def offset(x):
        counter["n"] += 1
        return x + counter["n"]

    out = sliding_window_predict(offset, np.zeros((64, 64, 100), np.float32), device=CPU,
                                 overlap=0.5, batch_size=1)
    assert counter["n"] == 3
    assert 1.0 < float(out[32, 32, 50]) < 3.0


def test_reconstruct_volume_is_proportional_to_the_input_scale(tmp_path):
    from phantom_head import head_activity

    short = head_activity((48, 52, 40), seed=3) * 1000.0
    model = lambda x: 0.5 * x + 0.1  # noqa: E731  (an affine map in network units)
    one = reconstruct_volume(model, short, (2.0, 2.0, 2.4), device=CPU)
    ten = reconstruct_volume(model, short * 10.0, (2.0, 2.0, 2.4), device=CPU)
    np.testing.assert_allclose(ten, 10.0 * one, rtol=1e-4, atol=1e-3)


def test_cancel_stops_between_tiles():
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        sliding_window_predict(lambda x: x, np.zeros((64, 64, 64), np.float32), device=CPU, cancel=token)


def test_device_selection():
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    assert select_device("cpu") == CPU
    with pytest.raises(PetiteError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PetiteError, match="CUDA is not available"):
            select_device("cuda")
