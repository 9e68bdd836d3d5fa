"""Clinical outputs of ``petite reconstruct`` and ``petite evaluate``: a derived DICOM series of the
reconstruction (``--dicom-out``), the regional uptake report (``--labels``) and SUV units
(``--units suv``), with every option and output checked before any work starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import PetiteError
from ..nifti_io import load_volume


def _stem(path: Path) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".json"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


@dataclass
class ReconstructionExtras:
    """What ``petite reconstruct`` writes besides OUTPUT: a derived series in ``dicom_out`` and a
    regional report (``labels`` against ``reference``) beside OUTPUT (``OUTPUT_regions.*``)."""

    input: Path
    output: Path
    reference: Optional[Path] = None
    labels: Optional[Path] = None
    ref_region: Optional[str] = None
    dicom_out: Optional[Path] = None
    series: Optional[str] = None
    units: str = "native"
    overwrite: bool = False
    files: List[Path] = field(default_factory=list)
    report: Optional[dict] = None


def plan_reconstruction_extras(input_path, output_path, *, reference=None, labels=None, ref_region=None,
                               dicom_out=None, series=None, units: str = "native",
                               overwrite: bool = False) -> ReconstructionExtras:
    """Check the clinical options of ``petite reconstruct`` before any work (PetiteError, one line):
    ``--units suv`` and ``--dicom-out`` need a DICOM series folder as INPUT (and ``--units suv`` a
    DICOM reference), ``--series`` a DICOM INPUT, ``--labels`` a ``--reference``; ``--dicom-out``
    may not lie inside INPUT and, like the report files, may not exist unless ``overwrite``."""
    from ..dicom.writer import check_series_target
    from ..regional import report_paths

    extras = ReconstructionExtras(Path(input_path), Path(output_path), Path(reference) if reference else None,
                                  Path(labels) if labels else None, ref_region,
                                  Path(dicom_out) if dicom_out else None, series, units, overwrite)
    dicom_input = extras.input.is_dir()
    if units == "suv" and not dicom_input:
        raise PetiteError(f"--units suv: {extras.input} is not a DICOM series folder; SUV needs the dose, weight "
                          "and times a DICOM PET series records")
    if units == "suv" and extras.reference is not None and not extras.reference.is_dir():
        raise PetiteError(f"--units suv: the reference {extras.reference} is not a DICOM series folder; it would "
                          "stay in its own units while the input is in SUV")
    if series and not dicom_input:
        raise PetiteError(f"--series: {extras.input} is not a DICOM folder")
    if extras.dicom_out is not None:
        if not dicom_input:
            raise PetiteError(f"--dicom-out: {extras.input} is not a DICOM series folder; the derived series copies "
                              "the input series' patient, study and geometry")
        if _inside(extras.dicom_out, extras.input):
            raise PetiteError(f"--dicom-out {extras.dicom_out}: inside the input folder {extras.input}; choose a "
                              "folder outside it")
        check_series_target(extras.dicom_out, overwrite)
    if ref_region and extras.labels is None:
        raise PetiteError("--ref-region: needs --labels")
    if extras.labels is not None:
        if extras.reference is None:
            raise PetiteError("--labels: needs --reference (the long scan the regional bias is measured against)")
        if not extras.labels.is_file():
            raise PetiteError(f"{extras.labels}: file not found (--labels)")
        existing = [p for p in report_paths(_stem(extras.output)).values() if p.exists()]
        if existing and not overwrite:
            raise PetiteError(f"{existing[0]}: already exists (use --overwrite to replace it)")
    return extras


def write_reconstruction_extras(extras: ReconstructionExtras, base=None, adapter=None) -> ReconstructionExtras:
    """Write the derived series and the regional report of a finished reconstruction (OUTPUT
    exists); call inside the :func:`PETITELib.dicom.reading` block that read the input.
    base/adapter: the model files used (named in the series' descriptions)."""
    from ..dicom.writer import derived_series_text, write_derived_series
    from ..regional import report_for_volumes, write_report

    output = load_volume(extras.output)
    if extras.dicom_out is not None:
        source = load_volume(extras.input)
        method = {"base": _stem(Path(base)).name if base else "default",
                  "adapter": _stem(Path(adapter)).name if adapter else "none"}
        description, derivation = derived_series_text(method, source.description, source.series_uid,
                                                      source.units)
        write_derived_series(extras.input, output.array, output.affine, extras.dicom_out, description=description,
                             derivation=derivation, units=source.units, series_uid=extras.series,
                             overwrite=extras.overwrite)
        extras.files.append(extras.dicom_out)
    if extras.labels is not None:
        images = {"short": load_volume(extras.input), "reconstruction": output, "long": load_volume(extras.reference)}
        extras.report = report_for_volumes(images, extras.labels, extras.ref_region)
        extras.files += write_report(extras.report, _stem(extras.output), overwrite=extras.overwrite)
    return extras


def regional_report_stem(out) -> Optional[Path]:
    """The stem of an evaluation's regional report files (RESULT.json -> RESULT_regions.*), or None."""
    return _stem(Path(out)) if out else None


def check_evaluation_extras(cohort_dir, *, out=None, labels=None, ref_region=None, units: str = "native",
                            overwrite: bool = False) -> None:
    """Check the clinical options of ``petite evaluate`` before any work (PetiteError, one line):
    ``--units suv`` needs DICOM series folders for every short and long scan, ``--labels`` an
    existing file, ``--ref-region`` labels (``--labels`` or the subjects' own), and the regional
    report files beside ``--out`` may not exist unless ``overwrite``."""
    from ..data.cohort import load_cohort
    from ..regional import report_paths

    cohort = load_cohort(cohort_dir)
    if units == "suv":
        for subject in cohort.subjects:
            for path in (subject.short, subject.long):
                if not path.is_dir():
                    raise PetiteError(f"--units suv: {path} is not a DICOM series folder; SUV needs the dose, "
                                      "weight and times a DICOM PET series records")
    if labels is not None and not Path(labels).is_file():
        raise PetiteError(f"{labels}: file not found (--labels)")
    if ref_region and labels is None and not any(s.labels for s in cohort.subjects):
        raise PetiteError(f"--ref-region: no subject of {cohort.root} has region labels (labels.nii.gz); "
                          "give --labels")
    if out and not overwrite:
        existing = [p for p in report_paths(regional_report_stem(out)).values() if p.exists()]
        if existing:
            raise PetiteError(f"{existing[0]}: already exists (use --overwrite to replace it)")
