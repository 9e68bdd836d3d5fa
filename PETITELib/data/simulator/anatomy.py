"""One subject's head: deformed template anatomy, atrophy and FDG uptake, in subject space.

Model (all drawn from the subject's own random generator, see :func:`sample_subject`):
- Head size: independent scale per axis, N(1, 0.035) clipped to [0.9, 1.1].
- Smooth deformation: three smooth random fields (bump width 30 mm), 2.5 mm RMS each.
- Cortical atrophy: a grey-matter fraction ``a`` moves to CSF; ``a`` = global U(0, 0.08) times a
  smooth +-50 % modulation, plus (AD subjects) medial/lateral temporal and parietal loss.
- Uptake in SUV (g/mL, concentration / (injected dose / body weight)): white matter
  N(2.2, 0.2); grey matter = white matter x N(4, 0.28) x region factor (frontal 1, parietal 1,
  temporal 0.92, occipital 1.08, posterior cingulate 1.08, deep grey 1.05, cerebellum 0.85, each
  x N(1, 0.05)) x (1 + 0.06 x smooth field, bump width 25 mm); CSF 0.05, bone 0.1, scalp and
  soft tissue 0.4 times white matter.
- AD-like hypometabolism (probability 0.5): Gaussian blobs in MNI space over posterior
  cingulate/precuneus (-25 %), inferior parietal (-20 %), lateral temporal (-15 %) and medial
  temporal (-15 %) cortex, times a severity U(0.6, 1.4) and a left/right asymmetry U(-0.25, 0.25).
- Attenuation at 511 keV: 0.00975 /mm for soft tissue, brain and CSF; 0.013 /mm for bone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

from .random_fields import SmoothField
from .template import GREY_MATTER_REGIONS, CSF, SKULL, SOFT_TISSUE, WHITE_MATTER, HeadTemplate

GM_TO_WM, CSF_UPTAKE, BONE_UPTAKE, SOFT_UPTAKE = 4.0, 0.05, 0.1, 0.4
MU_TISSUE_PER_MM, MU_BONE_PER_MM = 0.00975, 0.013
REGION_UPTAKE = {1: 1.0, 2: 1.0, 3: 0.92, 4: 1.08, 5: 1.08, 6: 1.05, 7: 0.85}
AD_PROBABILITY = 0.5
# (centre x, y, z in MNI mm; sigma x, y, z mm; hypometabolism; extra atrophy). A non-zero x is
# mirrored to both hemispheres.
AD_PATTERN = (
    ((0.0, -52.0, 35.0), (12.0, 16.0, 14.0), 0.25, 0.05),   # posterior cingulate / precuneus
    ((42.0, -62.0, 40.0), (12.0, 14.0, 12.0), 0.20, 0.06),  # inferior parietal
    ((54.0, -35.0, -10.0), (10.0, 22.0, 12.0), 0.15, 0.06),  # lateral temporal
    ((27.0, -22.0, -15.0), (7.0, 12.0, 7.0), 0.15, 0.15),    # medial temporal (hippocampus)
)
DEFORMATION_RMS_MM, DEFORMATION_LENGTH_MM = 2.5, 30.0
UPTAKE_FIELD_AMPLITUDE, UPTAKE_FIELD_LENGTH_MM = 0.06, 25.0
ATROPHY_FIELD_LENGTH_MM = 40.0
_CHUNK_SLICES = 24


@dataclass(frozen=True)
class SubjectParameters:
    """Everything random about one subject (JSON-ready scalars plus the smooth fields)."""

    name: str
    ad_like: bool
    ad_severity: float
    ad_asymmetry: float
    atrophy_global: float
    head_scale: Tuple[float, float, float]
    wm_suv: float
    gm_to_wm: float
    region_factors: Dict[int, float]
    body_weight_kg: float
    deformation: Tuple[SmoothField, SmoothField, SmoothField] = field(repr=False)
    uptake_field: SmoothField = field(repr=False)
    atrophy_field: SmoothField = field(repr=False)

    def to_json(self) -> Dict[str, object]:
        """The scalar parameters as plain JSON values (floats rounded to 4 decimals)."""
        return {
            "ad_like": self.ad_like, "ad_severity": round(self.ad_severity, 4),
            "ad_asymmetry_left_minus_right": round(self.ad_asymmetry, 4),
            "atrophy_global": round(self.atrophy_global, 4),
            "head_scale_xyz": [round(s, 4) for s in self.head_scale],
            "wm_suv": round(self.wm_suv, 4), "gm_to_wm": round(self.gm_to_wm, 4),
            "gm_region_factors": {str(k): round(v, 4) for k, v in self.region_factors.items()},
            "body_weight_kg": round(self.body_weight_kg, 2),
        }


def subject_name(index: int) -> str:
    """Folder name of the subject with 0-based ``index``: ``sub-001`` for index 0."""
    return f"sub-{index + 1:03d}"


def sample_subject(rng: np.random.Generator, index: int) -> SubjectParameters:
    """Draw one subject's parameters from ``rng`` (the subject's own generator)."""
    ad_like = bool(rng.random() < AD_PROBABILITY)
    ad_severity = float(rng.uniform(0.6, 1.4))
    ad_asymmetry = float(rng.uniform(-0.25, 0.25))
    atrophy_global = float(rng.uniform(0.0, 0.08))
    head_scale = tuple(float(s) for s in np.clip(rng.normal(1.0, 0.035, 3), 0.9, 1.1))
    wm_suv = float(np.clip(rng.normal(2.2, 0.2), 1.5, 3.0))
    gm_to_wm = float(np.clip(rng.normal(GM_TO_WM, 0.28), 3.0, 5.0))
    region_factors = {k: float(v * np.clip(rng.normal(1.0, 0.05), 0.85, 1.15))
                      for k, v in REGION_UPTAKE.items()}
    body_weight_kg = float(np.clip(rng.normal(75.0, 12.0), 50.0, 110.0))
    deformation = tuple(SmoothField.draw(rng, DEFORMATION_LENGTH_MM) for _ in range(3))
    uptake_field = SmoothField.draw(rng, UPTAKE_FIELD_LENGTH_MM)
    atrophy_field = SmoothField.draw(rng, ATROPHY_FIELD_LENGTH_MM)
    return SubjectParameters(subject_name(index), ad_like, ad_severity if ad_like else 0.0,
                             ad_asymmetry if ad_like else 0.0, atrophy_global, head_scale, wm_suv,
                             gm_to_wm, region_factors, body_weight_kg, deformation, uptake_field,
                             atrophy_field)


@dataclass(frozen=True)
class SubjectPhantom:
    """A subject in subject space (mm, RAS, MNI-like orientation) on an isotropic grid.

    suv: (x, y, z) float32 uptake in SUV (g/mL). mu: (x, y, z) float32 attenuation (1/mm).
    labels: (x, y, z) uint8 (template.LABELS). affine: 4x4 voxel-to-subject mm.
    anchor_mm: (3,) brain bounding-box centre (mm), the point placed at the scanner axis.
    head_top_mm: height of the top of the scalp above ``anchor_mm`` (mm).
    """

    parameters: SubjectParameters
    suv: np.ndarray
    mu: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    anchor_mm: np.ndarray
    head_top_mm: float


def _ad_blobs(parameters: SubjectParameters, coords, column: int) -> np.ndarray:
    """Sum of the AD pattern's Gaussian blobs weighted by column 2 (hypometabolism) or 3 (atrophy)."""
    x, y, z = coords
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=np.float32)
    for entry in AD_PATTERN:
        (cx, cy, cz), (sx, sy, sz) = entry[0], entry[1]
        for side in ((1.0, -1.0) if cx else (1.0,)):
            weight = 1.0 + parameters.ad_asymmetry * (1.0 if side * cx <= 0 else -1.0)
            blob = (np.exp(-0.5 * ((x - side * cx) / sx) ** 2) * np.exp(-0.5 * ((y - cy) / sy) ** 2)
                    * np.exp(-0.5 * ((z - cz) / sz) ** 2))
            total += np.float32(entry[column] * parameters.ad_severity * weight) * blob.astype(np.float32)
    return total


def _template_space_maps(template: HeadTemplate, parameters: SubjectParameters):
    """SUV, attenuation and label maps of the subject before deformation (template grid)."""
    coords = template.mni_coordinates()
    atrophy = parameters.atrophy_global * (1.0 + 0.5 * parameters.atrophy_field.evaluate(
        *(c.ravel() for c in coords)))
    hypometabolism = 0.0
    if parameters.ad_like:
        atrophy = atrophy + _ad_blobs(parameters, coords, 3)
        hypometabolism = _ad_blobs(parameters, coords, 2)
    atrophy = np.clip(atrophy, 0.0, 0.5)
    gm = template.gm * (1.0 - atrophy)
    csf = template.csf + template.gm * atrophy
    factors = np.ones(256, dtype=np.float32)
    for region, value in parameters.region_factors.items():
        factors[region] = value
    uptake = (1.0 + UPTAKE_FIELD_AMPLITUDE * parameters.uptake_field.evaluate(
        *(c.ravel() for c in coords)))
    gm_uptake = parameters.gm_to_wm * factors[template.region] * uptake * (1.0 - hypometabolism)
    suv = parameters.wm_suv * (gm * gm_uptake + template.wm + CSF_UPTAKE * csf
                               + BONE_UPTAKE * template.skull + SOFT_UPTAKE * template.soft)
    mu = (MU_TISSUE_PER_MM * (gm + template.wm + csf + template.soft)
          + MU_BONE_PER_MM * template.skull)
    labels = _dominant_tissue(template, gm, csf)
    return suv.astype(np.float32), mu.astype(np.float32), labels


def _dominant_tissue(template: HeadTemplate, gm: np.ndarray, csf: np.ndarray) -> np.ndarray:
    """Label of the largest tissue fraction per voxel (grey matter split by region; air if < 0.5 tissue)."""
    best = 1.0 - (gm + template.wm + csf + template.skull + template.soft)  # air
    labels = np.zeros(template.shape, dtype=np.uint8)
    for value, fraction in ((WHITE_MATTER, template.wm), (CSF, csf), (SKULL, template.skull),
                            (SOFT_TISSUE, template.soft)):
        wins = fraction > best
        labels[wins] = value
        best = np.where(wins, fraction, best)
    grey_wins = gm > best
    labels[grey_wins] = template.region[grey_wins]
    return labels


def build_subject(template: HeadTemplate, parameters: SubjectParameters) -> SubjectPhantom:
    """Deform the template into one subject: maps on the template grid, in subject space (mm).

    A subject point p comes from template point anchor + (p - anchor) / head_scale + d(p), with d
    the smooth deformation. Cost: about three trilinear resamplings of the template grid.
    """
    suv_t, mu_t = np.empty(template.shape, np.float32), np.empty(template.shape, np.float32)
    labels_t = np.empty(template.shape, np.uint8)
    for start in range(0, template.shape[2], _CHUNK_SLICES):  # slabs keep temporaries small
        stop = min(start + _CHUNK_SLICES, template.shape[2])
        suv_t[:, :, start:stop], mu_t[:, :, start:stop], labels_t[:, :, start:stop] = \
            _template_space_maps(template.slab(start, stop), parameters)
    x_mm, y_mm, z_mm = (c.ravel() for c in template.mni_coordinates())
    brain = np.isin(labels_t, GREY_MATTER_REGIONS + (WHITE_MATTER,))
    anchor = np.array([(a[np.flatnonzero(brain.any(axis=other))[[0, -1]]].mean())
                       for a, other in ((x_mm, (1, 2)), (y_mm, (0, 2)), (z_mm, (0, 1)))])
    scale = np.asarray(parameters.head_scale)
    origin, voxel = template.affine[:3, 3], template.voxel_mm
    outputs = [np.empty(template.shape, np.float32), np.empty(template.shape, np.float32),
               np.empty(template.shape, np.uint8)]
    for start in range(0, template.shape[2], _CHUNK_SLICES):
        zc = z_mm[start:start + _CHUNK_SLICES]
        points = np.meshgrid(x_mm, y_mm, zc, indexing="ij")
        index = [(anchor[a] + (points[a] - anchor[a]) / scale[a]
                  + DEFORMATION_RMS_MM * parameters.deformation[a].evaluate(x_mm, y_mm, zc)
                  - origin[a]) / voxel for a in range(3)]
        for out, source, order in zip(outputs, (suv_t, mu_t, labels_t), (1, 1, 0)):
            out[:, :, start:start + len(zc)] = ndimage.map_coordinates(
                source, index, order=order, mode="constant", cval=0.0, prefilter=False)
    head_z = z_mm[np.flatnonzero(outputs[2].any(axis=(0, 1)))]
    return SubjectPhantom(parameters, outputs[0], outputs[1], outputs[2], template.affine.copy(),
                          anchor, float(head_z[-1] - anchor[2]))
