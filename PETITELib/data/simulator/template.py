"""The population head model: MNI152 tissue maps shipped inside the nilearn wheel, plus shells.

nilearn's ``load_mni152_gm_template``, ``load_mni152_wm_template`` and ``load_mni152_brain_mask``
read the ICBM 2009 (1 mm, 197 x 233 x 189) maps from files inside the installed package; nothing
is downloaded. The brain is skull-stripped, so the head around it is built from distances to the
brain mask: CSF 0-2 mm, skull 2-9 mm, scalp 9-15 mm outside it. Below MNI z = -40 mm the head
outline is continued downwards as soft tissue (neck and face) so that a field of view reaching
below the cerebellum shows a neck rather than a closed scalp.

Coarse regions (not an anatomical atlas; boxes in MNI coordinates, mm) split grey matter into
frontal, parietal, temporal and occipital cortex, posterior cingulate/precuneus, deep grey
matter (basal ganglia and thalamus: more than 20 mm inside the brain, off the midline) and
cerebellum. They drive the regional uptake model and are written as ``labels.nii.gz``.
Distances are in mm; the grid stays in MNI orientation (RAS).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict

import numpy as np
from scipy import ndimage

# Label values written to labels.nii.gz (documented in scanner.json).
LABELS: Dict[int, str] = {
    0: "background (air)",
    1: "frontal cortex",
    2: "parietal cortex",
    3: "temporal cortex",
    4: "occipital cortex",
    5: "posterior cingulate and precuneus",
    6: "deep grey matter (basal ganglia, thalamus)",
    7: "cerebellum",
    8: "white matter",
    9: "cerebrospinal fluid",
    10: "skull",
    11: "scalp and soft tissue",
}
WHITE_MATTER, CSF, SKULL, SOFT_TISSUE = 8, 9, 10, 11
GREY_MATTER_REGIONS = (1, 2, 3, 4, 5, 6, 7)

CSF_SHELL_MM, SKULL_OUTER_MM, SCALP_OUTER_MM = 2.0, 9.0, 15.0
NECK_FROM_MNI_Z_MM = -40.0
PAD_BELOW_MM, PAD_ABOVE_MM = 40, 10


@dataclass(frozen=True)
class HeadTemplate:
    """Tissue fractions of the population head on a regular MNI grid.

    gm, wm, csf, skull, soft: (x, y, z) float32 fractions in [0, 1] whose sum is at most 1
    (the rest is air). region: (x, y, z) uint8 grey-matter region id (1..7, see LABELS) of each
    brain voxel, 0 elsewhere. affine: 4x4 voxel-to-MNI mm. voxel_mm: isotropic voxel size.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    skull: np.ndarray
    soft: np.ndarray
    region: np.ndarray
    affine: np.ndarray
    voxel_mm: float

    @property
    def shape(self):
        """Grid shape (x, y, z)."""
        return self.gm.shape

    def slab(self, start: int, stop: int) -> "HeadTemplate":
        """Slices ``start:stop`` along z (array views, no copies) with the matching affine."""
        affine = self.affine.copy()
        affine[:3, 3] += affine[:3, 2] * start
        cut = [v[:, :, start:stop] for v in (self.gm, self.wm, self.csf, self.skull, self.soft, self.region)]
        return HeadTemplate(*cut, affine, self.voxel_mm)

    def mni_coordinates(self):
        """Three open-grid arrays (x, y, z) of voxel-centre MNI coordinates in mm (broadcastable)."""
        axes = [self.affine[a, 3] + self.voxel_mm * np.arange(n) for a, n in enumerate(self.shape)]
        return np.ix_(*axes)


def _load_mni_maps():
    """The nilearn MNI152 grey matter, white matter and brain mask at 1 mm (arrays + affine)."""
    from ...extras import require

    require("sim", "the simulator's MNI152 anatomy")
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj, dtype=np.float32)
    return np.asarray(gm_img.dataobj, dtype=np.float32), wm, mask, np.asarray(gm_img.affine, float)


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``^3 blocks of an (x, y, z) array (voxels left over at the ends are dropped)."""
    if factor == 1:
        return volume
    shape = [n // factor for n in volume.shape]
    cropped = volume[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    return cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))


def _distance_mm(mask: np.ndarray, voxel_mm: int) -> np.ndarray:
    """Euclidean distance (mm) from each voxel of ``mask`` to the nearest voxel outside it (0 outside).

    On 1 mm grids the transform runs on 2 mm blocks and is interpolated back (about 1 mm
    accurate, ten times faster): distances only place shells a few mm thick.
    """
    if voxel_mm > 1:
        return ndimage.distance_transform_edt(mask, sampling=voxel_mm).astype(np.float32)
    coarse = ndimage.distance_transform_edt(_block_mean(mask.astype(np.float32), 2) >= 0.5, sampling=2.0)
    fine = ndimage.zoom(coarse.astype(np.float32), 2, order=1, grid_mode=True, mode="nearest")
    fine = np.pad(fine, [(0, n - f) for n, f in zip(mask.shape, fine.shape)], mode="edge")
    fine[~mask] = 0.0
    return fine


def _regions(template_shape, coords, depth_mm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Grey-matter region id (1..7) for every brain voxel from MNI boxes and depth below the surface."""
    x, y, z = (np.broadcast_to(c, template_shape) for c in coords)
    region = np.ones(template_shape, dtype=np.uint8)  # frontal: whatever is left
    rules = (  # later rules win
        (2, (y < -20) & (z > 25)),
        (3, (z < 8) & (y > -72) & (y < 25) & ((np.abs(x) > 28) | (z < -10))),
        (4, y < -72),
        (6, (depth_mm > 20) & (np.abs(x) > 3) & (np.abs(x) < 33) & (y > -40) & (y < 28)
         & (z > -12) & (z < 22)),
        (5, (np.abs(x) < 14) & (y > -75) & (y < -25) & (z > 18) & (z < 55)),
        (7, (y < -40) & (z < -20 - 0.25 * (y + 40))),
    )
    for value, where in rules:
        region[where] = value
    region[~brain] = 0
    return region


@lru_cache(maxsize=2)
def load_head_template(voxel_mm: int = 1) -> HeadTemplate:
    """Build (once per process and voxel size) the head model on an isotropic ``voxel_mm`` grid.

    voxel_mm: 1 (full-mode simulation) or 2 (fast surrogate). The grid is the MNI152 one,
    padded by 40 mm below and 10 mm above so the neck and scalp fit.
    """
    gm, wm, mask, affine = _load_mni_maps()
    gm, wm, mask = (_block_mean(v, voxel_mm) for v in (gm, wm, mask))
    pad = ((0, 0), (0, 0), (PAD_BELOW_MM // voxel_mm, PAD_ABOVE_MM // voxel_mm))
    gm, wm, mask = (np.pad(v, pad) for v in (gm, wm, mask))
    affine = affine.copy()
    affine[:3, :3] *= voxel_mm
    affine[:3, 3] += (voxel_mm - 1) / 2.0  # block centres
    affine[2, 3] -= pad[2][0] * voxel_mm

    brain = mask >= 0.5
    z_mm = affine[2, 3] + voxel_mm * np.arange(brain.shape[2])
    neck_source = int(np.searchsorted(z_mm, NECK_FROM_MNI_Z_MM))
    head_core = brain.copy()
    head_core[:, :, :neck_source] |= brain[:, :, neck_source][:, :, None]
    outside_brain = _distance_mm(~brain, voxel_mm)
    outside_core = _distance_mm(~head_core, voxel_mm)

    shell = ~brain & (outside_brain <= CSF_SHELL_MM)
    csf = np.where(brain | shell, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    skull = ~brain & ~shell & (outside_brain <= SKULL_OUTER_MM)
    soft = ~brain & ~shell & ~skull & (outside_core <= SCALP_OUTER_MM)
    gm[skull | soft] = 0.0
    wm[skull | soft] = 0.0
    depth = _distance_mm(brain, voxel_mm)
    coords = [affine[a, 3] + voxel_mm * np.arange(n) for a, n in enumerate(brain.shape)]
    region = _regions(brain.shape, np.ix_(*coords), depth, brain | (gm > 0))
    as_float = lambda v: np.ascontiguousarray(v, dtype=np.float32)  # noqa: E731
    return HeadTemplate(as_float(gm), as_float(wm), as_float(csf), as_float(skull), as_float(soft),
                        region, affine, float(voxel_mm))
