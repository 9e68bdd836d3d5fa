"""Whole-volume inference: MONAI's sliding window, overlapping 64^3 tiles blended with a Gaussian.

The network sees exactly the ROI it was trained on (``ROI_SIZE``, 64^3, from the backbones); a
volume smaller than the ROI along an axis (e.g. 63 slices) is zero-padded (zero is air after
normalisation) and the padding is cropped off again, so the output has the input's shape exactly.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..backbones.base import ROI_SIZE
from ..errors import PetiteError
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from .devices import autocast_context

DEFAULT_OVERLAP = 0.25  # MONAI's default; 0.5 triples the tiles (about 3x slower) for little gain
MAX_OVERLAP = 0.9


def check_overlap(overlap: float) -> float:
    """``overlap`` if it lies in [0, MAX_OVERLAP]; a PetiteError naming ``--overlap`` otherwise."""
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise PetiteError(f"--overlap {overlap}: must be between 0 and {MAX_OVERLAP}")
    return overlap


def tile_count(shape: Sequence[int], roi: int = ROI_SIZE, overlap: float = DEFAULT_OVERLAP) -> int:
    """Number of ``roi``-sized tiles MONAI's sliding window visits over a volume of ``shape``
    (axes shorter than ``roi`` are padded to it; stride ``int(roi * (1 - overlap))``, at least 1)."""
    stride = max(1, int(roi * (1.0 - overlap)))
    return int(np.prod([max(1, math.ceil((max(size, roi) - roi) / stride) + 1) for size in shape]))


@torch.inference_mode()
def sliding_window_predict(predict: Callable[[torch.Tensor], torch.Tensor], volume: np.ndarray, *,
                           device: torch.device, roi: int = ROI_SIZE, overlap: float = DEFAULT_OVERLAP,
                           batch_size: int = 2, progress: Optional[ProgressCallback] = None,
                           cancel: Optional[CancelToken] = None, stage: str = "reconstruct") -> np.ndarray:
    """Apply ``predict`` ((B, 1, roi, roi, roi) -> same shape) to a whole (x, y, z) volume.

    ``volume`` is float32 in network units (already normalised). MONAI's
    ``sliding_window_inference`` tiles it (axes shorter than the ROI zero-padded, zero being
    air after normalisation, and cropped back), overlapping by ``overlap`` (fraction of the ROI)
    and blended with a Gaussian window (sigma = 0.125 ROI); on CUDA the tiles run under
    autocast. The predictor reports one progress step per batch of tiles and checks ``cancel``
    before each batch. Returns a float32 array of ``volume``'s shape.
    """
    from monai.inferers import sliding_window_inference

    check_overlap(overlap)
    image = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    total, done = tile_count(image.shape[2:], roi, overlap), [0]

    def batch(tiles: torch.Tensor) -> torch.Tensor:
        check_cancel(cancel)
        with autocast_context(device):
            out = predict(tiles.to(device))
        done[0] = min(done[0] + tiles.shape[0], total)
        report(progress, stage, done[0], total, f"tile {done[0]}/{total}")
        return out.float().cpu()

    result = sliding_window_inference(image, roi, batch_size, batch, overlap=overlap, mode="gaussian",
                                      sigma_scale=0.125, padding_mode="constant", cval=0.0)
    return np.ascontiguousarray(result[0, 0].numpy(), dtype=np.float32)


def reconstruct_volume(predict: Callable[[torch.Tensor], torch.Tensor], volume: np.ndarray,
                       spacing: Sequence[float], *, device: torch.device, overlap: float = DEFAULT_OVERLAP,
                       batch_size: int = 2, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None, name: str = "input",
                       check_range: bool = True) -> np.ndarray:
    """Long-scan estimate of a short scan, both (x, y, z) float32 in the input's units.

    The short scan is divided by its normalisation factor (:mod:`PETITELib.data.normalization`),
    passed through :func:`sliding_window_predict`, and multiplied back, so a volume scaled by
    c gives an output scaled by c. spacing: voxel size in mm (for the factor's head mask).
    A result with NaN/Inf voxels or (``check_range``) outside the sane range of the input is
    refused with a PetiteError naming ``name`` (:func:`PETITELib.input_domain.check_reconstruction`);
    evaluations turn the range check off: they measure what a model gives, however poor.
    """
    from ..data.normalization import denormalize, normalization_factor, normalize
    from ..input_domain import check_reconstruction

    factor = normalization_factor(volume, spacing, name=name)
    output = sliding_window_predict(predict, normalize(volume, factor), device=device, overlap=overlap,
                                    batch_size=batch_size, progress=progress, cancel=cancel)
    output = denormalize(output, factor)
    check_reconstruction(output, volume, name, check_range)
    return output
