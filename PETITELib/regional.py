"""Regional uptake report: is a reconstruction readable the way a physician reads a scan?

For a label volume on the reference's grid (0 = background; the simulator's ``labels.nii.gz``
by default in simulated cohorts) and images on that grid (e.g. the short scan, a
reconstruction and the long scan), per region:

- mean uptake of each image (its units: Bq/mL, SUV...),
- relative bias of each image against the reference image (the long scan): ``100 * (m / m_long - 1)`` %,
- SUVR against a reference region (``--ref-region``; default the label named cerebellum, when the
  labels name one): ``m / m_ref``, and its bias against the long scan's SUVR (%),

and per image the grey-to-white-matter contrast (voxel-weighted mean of the grey-matter regions
over the white-matter mean) and its ratio to the long scan's. The summary figures of an image
(the benchmark's columns, :data:`SUMMARY_KEYS`) are the mean |bias| and mean |SUVR bias| over the
brain regions (grey and white matter; all labelled regions when the labels are not named),
the reference region left out of the SUVR mean, and the contrast and contrast ratio.

Region names come from a JSON sidecar beside the label file (``labels.nii.gz`` ->
``labels.json``: ``{"1": "frontal cortex", ...}``) or, for a simulated cohort, the ``labels``
table of its ``scanner.json``; grey or white matter is read from the names. Output: a markdown
table for the terminal, JSON, CSV (one row per region and image) and a bar chart PNG.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import PetiteError
from .nifti_io import Volume, atomic_write_bytes, load_volume

REFERENCE_IMAGE = "long"
DEFAULT_REFERENCE_REGION = "cerebellum"
GREY_WORDS = ("cortex", "grey", "gray", "cingulate", "precuneus", "cerebell", "thalamus", "ganglia",
              "caudate", "putamen", "pallidum", "hippocamp", "amygdala", "insula", "accumbens")
WHITE_WORDS = ("white matter",)
SUMMARY_KEYS = ("regional_abs_bias_pct", "suvr_abs_bias_pct", "gw_contrast", "gw_contrast_vs_long")
AFFINE_TOLERANCE_MM = 1e-3
SCANNER_FILE = "scanner.json"


def tissue_of(name: str) -> str:
    """``grey``, ``white`` or ``other`` from a region's name (see GREY_WORDS, WHITE_WORDS)."""
    lowered = name.lower()
    if any(word in lowered for word in WHITE_WORDS):
        return "white"
    return "grey" if any(word in lowered for word in GREY_WORDS) else "other"


@dataclass(frozen=True)
class LabelTable:
    """Names of the labels of a label volume ({} when unknown: regions are then numbered)."""

    names: Mapping[int, str]

    def name(self, label: int) -> str:
        """The region's name, or ``region N``."""
        return self.names.get(label, f"region {label}")

    def tissue(self, label: int) -> str:
        """``grey``, ``white`` or ``other`` (``other`` for unnamed labels)."""
        return tissue_of(self.names[label]) if label in self.names else "other"


def _table_from(content, path: Path) -> Dict[int, str]:
    table = content.get("labels", content) if isinstance(content, dict) else None
    if not isinstance(table, dict):
        raise PetiteError(f"{path}: expected a JSON object of label names, e.g. {{\"1\": \"frontal cortex\"}}")
    try:
        return {int(key): str(value) for key, value in table.items()}
    except (TypeError, ValueError):
        raise PetiteError(f"{path}: label names must be keyed by label numbers, e.g. {{\"1\": \"frontal cortex\"}}") \
            from None


def label_sidecar(labels_path: Path) -> Path:
    """The JSON file naming the labels of ``labels_path`` (``X.nii.gz`` -> ``X.json``)."""
    name = labels_path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return labels_path.with_name(name[: -len(suffix)] + ".json")
    return labels_path.with_suffix(".json")


def read_label_table(labels_path) -> LabelTable:
    """Label names from the sidecar JSON beside ``labels_path``, else the ``labels`` table of a
    simulated cohort's ``scanner.json`` (two folders up), else none."""
    labels_path = Path(labels_path)
    candidates = [label_sidecar(labels_path), labels_path.parent.parent / SCANNER_FILE]
    for index, path in enumerate(candidates):
        if not path.is_file():
            continue
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise PetiteError(f"{path}: unreadable JSON ({exc})") from None
        if index == 1 and not (isinstance(content, dict) and isinstance(content.get("labels"), dict)):
            continue
        return LabelTable(_table_from(content, path))
    return LabelTable({})


@dataclass
class Regions:
    """A label volume on a reference grid: ``labels`` (x, y, z) int32, their ``table``, the labels
    present (``ids``, background 0 excluded) with their voxel counts, and the SUVR reference region."""

    labels: np.ndarray
    table: LabelTable
    ids: Tuple[int, ...]
    voxels: Dict[int, int]
    reference_region: Optional[int]

    def means(self, volume: np.ndarray) -> Dict[int, float]:
        """Mean of an (x, y, z) ``volume`` (same shape as the labels) in each region."""
        sums = np.bincount(self.labels.ravel(), weights=np.asarray(volume, dtype=np.float64).ravel(),
                           minlength=max(self.ids) + 1)
        return {label: float(sums[label] / self.voxels[label]) for label in self.ids}

    def tissue_ids(self, tissue: str) -> Tuple[int, ...]:
        """Labels of one tissue class (``grey``, ``white``, ``other``)."""
        return tuple(label for label in self.ids if self.table.tissue(label) == tissue)

    @property
    def summary_ids(self) -> Tuple[int, ...]:
        """The brain regions the summary figures average over (grey and white matter; all when none is named)."""
        brain = self.tissue_ids("grey") + self.tissue_ids("white")
        return tuple(sorted(brain)) if brain else self.ids


def resolve_reference_region(table: LabelTable, ids: Sequence[int], option, labels_path) -> Optional[int]:
    """The SUVR reference label: ``option`` as a label number or region name (case-insensitive; a
    unique part of a name will do), or by default the region named cerebellum (None when the
    labels name none). PetiteError naming ``--ref-region`` when the option matches no region."""
    if option in (None, ""):
        matches = [label for label in ids if DEFAULT_REFERENCE_REGION in table.name(label).lower()]
        return matches[0] if len(matches) == 1 else None
    text = str(option).strip()
    if text.lstrip("-").isdigit():
        label = int(text)
        if label not in ids:
            raise PetiteError(f"--ref-region {text}: no voxel of {labels_path} has label {label}")
        return label
    exact = [label for label in ids if table.name(label).lower() == text.lower()]
    partial = [label for label in ids if text.lower() in table.name(label).lower()]
    found = exact or partial
    if len(found) != 1:
        names = ", ".join(f"{label} {table.name(label)}" for label in ids)
        problem = "matches several regions" if found else "matches no region"
        raise PetiteError(f"--ref-region {text}: {problem} of {labels_path} ({names})")
    return found[0]


def load_regions(labels_path, reference: Volume, reference_name: str, ref_region=None) -> Regions:
    """Read a label volume and check it against the reference volume's grid.

    PetiteError (one line naming ``labels_path``) when it is missing, unreadable, on another grid
    (shape, or affine by more than AFFINE_TOLERANCE_MM), holds non-integer or negative values, or
    labels nothing; see :func:`resolve_reference_region` for ``ref_region``.
    """
    labels_path = Path(labels_path)
    volume = load_volume(labels_path)
    if volume.array.shape != reference.array.shape:
        raise PetiteError(f"{labels_path}: shape {'x'.join(map(str, volume.array.shape))} differs from "
                          f"{reference_name} ({'x'.join(map(str, reference.array.shape))}): the labels must be "
                          "on the reference's voxel grid")
    difference = float(np.abs(volume.affine - reference.affine).max())
    if difference > AFFINE_TOLERANCE_MM:
        raise PetiteError(f"{labels_path}: affine differs from {reference_name}'s by up to {difference:.4g} mm: the "
                          "labels must be on the reference's voxel grid")
    values = volume.array
    if (values < 0).any() or not np.array_equal(values, np.round(values)):
        raise PetiteError(f"{labels_path}: not a label volume (labels are non-negative integers)")
    labels = values.astype(np.int32)
    counts = np.bincount(labels.ravel())
    ids = tuple(int(label) for label in np.flatnonzero(counts) if label != 0)
    if not ids:
        raise PetiteError(f"{labels_path}: no labelled voxel (every voxel is 0, the background)")
    table = read_label_table(labels_path)
    reference_region = resolve_reference_region(table, ids, ref_region, labels_path)
    return Regions(labels, table, ids, {label: int(counts[label]) for label in ids}, reference_region)


def _ratio_pct(value: float, reference: float) -> Optional[float]:
    return 100.0 * (value / reference - 1.0) if reference > 0 else None


def _contrast(means: Mapping[int, float], regions: Regions) -> Optional[float]:
    grey, white = regions.tissue_ids("grey"), regions.tissue_ids("white")
    if not grey or not white:
        return None
    weights = np.array([regions.voxels[label] for label in grey], dtype=np.float64)
    grey_mean = float(np.dot(weights, [means[label] for label in grey]) / weights.sum())
    white_weights = np.array([regions.voxels[label] for label in white], dtype=np.float64)
    white_mean = float(np.dot(white_weights, [means[label] for label in white]) / white_weights.sum())
    return grey_mean / white_mean if white_mean > 0 else None


def _mean_abs(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [abs(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summary(means: Mapping[int, float], reference_means: Mapping[int, float], regions: Regions) -> Dict[str, float]:
    """The summary figures (:data:`SUMMARY_KEYS`) of one image against the reference image, from
    their region means; keys whose figure is undefined (no reference region, no grey/white
    names, a zero mean) are left out."""
    ids = regions.summary_ids
    figures = {"regional_abs_bias_pct": _mean_abs(_ratio_pct(means[r], reference_means[r]) for r in ids)}
    ref = regions.reference_region
    if ref is not None and means[ref] > 0 and reference_means[ref] > 0:
        figures["suvr_abs_bias_pct"] = _mean_abs(
            _ratio_pct(means[r] / means[ref], reference_means[r] / reference_means[ref]) for r in ids if r != ref)
    contrast, reference_contrast = _contrast(means, regions), _contrast(reference_means, regions)
    figures["gw_contrast"] = contrast
    if contrast is not None and reference_contrast:
        figures["gw_contrast_vs_long"] = contrast / reference_contrast
    return {key: value for key, value in figures.items() if value is not None}


def compare(means: Mapping[str, Mapping[int, float]], regions: Regions, units: str,
            reference_image: str = REFERENCE_IMAGE) -> dict:
    """The regional report (JSON-ready) of images given by their region means.

    means: ``{image name: {label: mean}}`` including ``reference_image``; images keep their order.
    Returns ``{"units", "reference_image", "reference_region", "images", "subjects": 1, "regions":
    [{"label", "name", "tissue", "voxels", "mean", "bias_pct", "suvr", "suvr_bias_pct"}],
    "grey_white_contrast", "summary"}`` (dicts keyed by image; biases for the other images only).
    """
    if reference_image not in means:
        raise PetiteError(f"regional report: the reference image '{reference_image}' is missing")
    images = list(means)
    others = [image for image in images if image != reference_image]
    reference = means[reference_image]
    ref = regions.reference_region
    rows = []
    for label in regions.ids:
        row = {"label": label, "name": regions.table.name(label), "tissue": regions.table.tissue(label),
               "voxels": regions.voxels[label], "mean": {image: means[image][label] for image in images},
               "bias_pct": {image: _ratio_pct(means[image][label], reference[label]) for image in others}}
        if ref is not None:
            row["suvr"] = {image: (means[image][label] / means[image][ref] if means[image][ref] > 0 else None)
                           for image in images}
            row["suvr_bias_pct"] = {image: (_ratio_pct(row["suvr"][image], row["suvr"][reference_image])
                                            if row["suvr"][image] is not None and row["suvr"][reference_image]
                                            else None) for image in others}
        rows.append(row)
    return {"units": units, "reference_image": reference_image,
            "reference_region": None if ref is None else {"label": ref, "name": regions.table.name(ref)},
            "images": images, "subjects": 1, "regions": rows,
            "grey_white_contrast": {image: _contrast(means[image], regions) for image in images},
            "summary": {image: summary(means[image], reference, regions) for image in others}}


def merge(reports: Sequence[dict]) -> dict:
    """One report of one subject from several reports of it that share the reference image (e.g.
    one per method of an evaluation): the images of all, in order of first appearance."""
    merged = json.loads(json.dumps(reports[0]))
    for report in reports[1:]:
        reference = merged["reference_image"]
        new = [image for image in report["images"] if image not in merged["images"] and image != reference]
        merged["images"] = [*(i for i in merged["images"] if i != reference), *new, reference]
        for row, other in zip(merged["regions"], report["regions"]):
            for key in ("mean", "bias_pct", "suvr", "suvr_bias_pct"):
                if key in other:
                    row.setdefault(key, {}).update({i: v for i, v in other[key].items() if i in new})
        merged["grey_white_contrast"].update({i: v for i, v in report["grey_white_contrast"].items() if i in new})
        merged["summary"].update({i: v for i, v in report["summary"].items() if i in new})
    return merged


def _average(values: List) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def average(reports: Sequence[dict]) -> dict:
    """The mean report of several subjects (same images and reference region): every figure is
    the mean over the subjects that have it (regions matched by label; voxels are the mean count)."""
    if not reports:
        raise PetiteError("regional report: nothing to average")
    first = reports[0]
    labels = sorted({row["label"] for report in reports for row in report["regions"]})
    rows = []
    for label in labels:
        found = [row for report in reports for row in report["regions"] if row["label"] == label]
        row = {"label": label, "name": found[0]["name"], "tissue": found[0]["tissue"],
               "voxels": _average([r["voxels"] for r in found])}
        for key in ("mean", "bias_pct", "suvr", "suvr_bias_pct"):
            if key in found[0]:
                row[key] = {image: _average([r[key].get(image) for r in found]) for image in found[0][key]}
        rows.append(row)
    images = first["images"]
    return {**{k: first[k] for k in ("units", "reference_image", "reference_region")}, "images": images,
            "subjects": sum(report.get("subjects", 1) for report in reports), "regions": rows,
            "grey_white_contrast": {i: _average([r["grey_white_contrast"].get(i) for r in reports]) for i in images},
            "summary": {i: {key: _average([r["summary"].get(i, {}).get(key) for r in reports])
                            for key in SUMMARY_KEYS if any(key in r["summary"].get(i, {}) for r in reports)}
                        for i in images if i != first["reference_image"]}}


def _number(value, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _markdown(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_report(report: dict) -> str:
    """The report as markdown tables: mean uptake and bias, SUVR and its bias, and the summary."""
    images, reference = report["images"], report["reference_image"]
    others = [image for image in images if image != reference]
    rows = report["regions"]
    subjects = f" (mean of {report['subjects']} subjects)" if report.get("subjects", 1) > 1 else ""
    sections = [(f"Regional uptake ({report['units']}){subjects}: mean per region and bias against the {reference} scan",
                 _markdown(["Region", "voxels"] + [f"{i} mean" for i in images] + [f"{i} bias %" for i in others],
                           [[f"{row['label']} {row['name']}", _number(row["voxels"], 0)]
                            + [_number(row["mean"][i], 4 if abs(row["mean"][i] or 0) < 100 else 1) for i in images]
                            + [_number(row["bias_pct"][i], 2) for i in others] for row in rows]))]
    ref = report["reference_region"]
    if ref is not None:
        sections.append((f"SUVR (reference region: {ref['label']} {ref['name']}) and its bias against the "
                         f"{reference} scan",
                         _markdown(["Region"] + [f"{i} SUVR" for i in images] + [f"{i} SUVR bias %" for i in others],
                                   [[f"{row['label']} {row['name']}"] + [_number(row["suvr"][i], 4) for i in images]
                                    + [_number(row["suvr_bias_pct"][i], 2) for i in others] for row in rows])))
    contrast, figures = report["grey_white_contrast"], report["summary"]
    sections.append(("Summary over the brain regions (grey and white matter)"
                     + ("" if ref else "; no SUVR: the labels name no cerebellum, choose a region with --ref-region"),
                     _markdown(["Image", "bias (mean abs %)", "SUVR bias (mean abs %)", "grey/white contrast",
                                f"contrast vs {reference}"],
                               [[i, _number(figures.get(i, {}).get("regional_abs_bias_pct"), 2),
                                 _number(figures.get(i, {}).get("suvr_abs_bias_pct"), 2), _number(contrast.get(i), 4),
                                 _number(figures.get(i, {}).get("gw_contrast_vs_long"), 4)] for i in others]
                               + [[reference, "-", "-", _number(contrast.get(reference), 4), "1.0000"]])))
    return "\n".join(f"{title}\n\n{table}" for title, table in sections)


def to_csv(report: dict) -> str:
    """CSV text: one row per region and image (label, name, tissue, voxels, image, mean, bias_pct,
    suvr, suvr_bias_pct; empty where undefined)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", "name", "tissue", "voxels", "image", f"mean ({report['units']})", "bias_pct",
                     "suvr", "suvr_bias_pct"])

    def cell(value):
        return "" if value is None else f"{value:.6g}"

    for row in report["regions"]:
        for image in report["images"]:
            writer.writerow([row["label"], row["name"], row["tissue"], cell(row["voxels"]), image,
                             cell(row["mean"][image]), cell(row["bias_pct"].get(image)),
                             cell(row.get("suvr", {}).get(image)), cell(row.get("suvr_bias_pct", {}).get(image))])
    return buffer.getvalue()


def plot_png(report: dict) -> bytes:
    """PNG bytes: per region, SUVR (or mean uptake without a reference region) of each image as
    grouped bars, and the bias of each image against the reference image (%)."""
    from .extras import require

    require("figures", "the regional uptake plot")
    from matplotlib.figure import Figure

    images, reference = report["images"], report["reference_image"]
    others = [image for image in images if image != reference]
    rows = report["regions"]
    names = [row["name"] for row in rows]
    use_suvr = report["reference_region"] is not None
    value_key, bias_key = ("suvr", "suvr_bias_pct") if use_suvr else ("mean", "bias_pct")
    figure = Figure(figsize=(max(8.0, 0.9 * len(rows) + 3), 7), layout="constrained")
    top, bottom = figure.subplots(2, 1)
    x = np.arange(len(rows))
    width = 0.8 / len(images)
    for index, image in enumerate(images):
        values = [row[value_key].get(image) or 0.0 for row in rows]
        top.bar(x + (index - (len(images) - 1) / 2) * width, values, width, label=image)
    top.set_ylabel("SUVR" if use_suvr else f"mean uptake ({report['units']})")
    ref = report["reference_region"]
    contrast = report["grey_white_contrast"]
    title = ", ".join(f"{i} {contrast[i]:.3f}" for i in images if contrast.get(i) is not None)
    top.set_title((f"SUVR (reference: {ref['name']})" if use_suvr else "Mean regional uptake")
                  + (f"; grey/white contrast: {title}" if title else ""), fontsize=9)
    top.legend(fontsize=8)
    width = 0.8 / max(len(others), 1)
    for index, image in enumerate(others):
        values = [row[bias_key].get(image) or 0.0 for row in rows]
        bottom.bar(x + (index - (len(others) - 1) / 2) * width, values, width, label=image)
    bottom.axhline(0.0, color="black", linewidth=0.8)
    bottom.set_ylabel(f"{'SUVR ' if use_suvr else ''}bias vs {reference} (%)")
    bottom.legend(fontsize=8)
    for axis in (top, bottom):
        axis.set_xticks(x)
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def report_paths(stem) -> Dict[str, Path]:
    """Where a report is written: ``STEM_regions.json``, ``.csv`` and ``.png``."""
    stem = Path(stem)
    return {suffix: stem.with_name(f"{stem.name}_regions.{suffix}") for suffix in ("json", "csv", "png")}


def write_report(report: dict, stem, overwrite: bool = False) -> List[Path]:
    """Write the report as JSON, CSV and PNG (:func:`report_paths`); refuses existing files unless
    ``overwrite`` (all are checked before any is written). Returns the paths written."""
    paths = report_paths(stem)
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise PetiteError(f"{existing[0]}: already exists (use --overwrite to replace it)")
    text = json.dumps(report, indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(paths["json"], text.encode("utf-8"), overwrite=overwrite)
    atomic_write_bytes(paths["csv"], to_csv(report).encode("utf-8"), overwrite=overwrite)
    atomic_write_bytes(paths["png"], plot_png(report), overwrite=overwrite)
    return list(paths.values())


def units_of(volume: Volume) -> str:
    """Human-readable units of a loaded volume (a DICOM series knows them; NIfTI does not)."""
    return getattr(volume, "units_name", None) or "image units"


def report_for_volumes(images: Mapping[str, Volume], labels_path, ref_region=None,
                       reference_image: str = REFERENCE_IMAGE) -> dict:
    """The regional report of loaded volumes ``{name: Volume}`` (all on the reference image's grid)
    with the label volume at ``labels_path`` (checked against the reference image)."""
    reference = images[reference_image]
    regions = load_regions(labels_path, reference, reference_image, ref_region)
    means = {name: regions.means(volume.array) for name, volume in images.items()}
    return compare(means, regions, units_of(reference), reference_image)


def cohort_report(methods: Mapping[str, dict]) -> Optional[dict]:
    """The mean regional report over subjects of an evaluation's methods (``{name: entry}`` whose
    entries hold ``regions: {subject: report}``, see :func:`PETITELib.engine.evaluation.evaluate_models`),
    or None when no subject had labels."""
    subjects = sorted({subject for entry in methods.values() for subject in entry.get("regions", {})})
    if not subjects:
        return None
    return average([merge([entry["regions"][subject] for entry in methods.values()
                           if subject in entry.get("regions", {})]) for subject in subjects])


SUVR_BIAS_TARGET_PCT = 2.0   # mean |SUVR bias| a reconstruction may add: FDG SUVR test-retest is a few %
CONTRAST_TARGET = 0.01       # grey/white contrast within 1 % of the long scan's


def regional_targets(methods: Mapping[str, Mapping]) -> dict:
    """The regional targets of a benchmark, measured (values) and met or not (``*_ok``), from its
    method rows (``input``, ``petite``; each a mapping of :data:`SUMMARY_KEYS` means):
    PETITE's mean |SUVR bias| <= SUVR_BIAS_TARGET_PCT and below the input's (the short scan's),
    and its grey/white contrast within CONTRAST_TARGET of the long scan's. {} without figures."""
    petite, short = methods.get("petite", {}), methods.get("input", {})
    checks = {}
    if petite.get("suvr_abs_bias_pct") is not None:
        checks["petite_suvr_abs_bias_pct"] = petite["suvr_abs_bias_pct"]
        checks["input_suvr_abs_bias_pct"] = short.get("suvr_abs_bias_pct")
        checks["petite_suvr_bias_ok"] = (petite["suvr_abs_bias_pct"] <= SUVR_BIAS_TARGET_PCT and
                                         (short.get("suvr_abs_bias_pct") is None
                                          or petite["suvr_abs_bias_pct"] < short["suvr_abs_bias_pct"]))
    if petite.get("gw_contrast_vs_long") is not None:
        checks["petite_gw_contrast_vs_long"] = petite["gw_contrast_vs_long"]
        checks["petite_gw_contrast_ok"] = abs(petite["gw_contrast_vs_long"] - 1.0) <= CONTRAST_TARGET
    return checks
