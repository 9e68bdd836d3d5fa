"""PET DICOM in and out: one series folder <-> an (x, y, z) volume with its 4x4 RAS affine (mm).

- :mod:`.series`: find the series in a folder (headers only) and pick one (``--series UID``).
- :mod:`.geometry`: slice order, spacing and the affine from Image Position/Orientation
  (oblique included); missing, duplicate or inconsistent slices are refused naming the file.
- :mod:`.suv`: body-weight SUV from Patient Weight, Radionuclide Total Dose, half-life and the
  injection/series times (decay-corrected to the series start, as DICOM's ``START`` defines).
- :mod:`.reader`: :func:`read_series` (per-slice Rescale Slope/Intercept, Units BQML/CNTS/GML,
  compressed transfer syntaxes that the installed decoders handle); :func:`reading` sets the
  series choice and units for every folder read by :func:`PETITELib.nifti_io.load_volume`.
- :mod:`.writer`: :func:`write_derived_series`, a reconstruction written as a new derived PET
  series beside its input (same Study and Frame of Reference, new Series/SOP Instance UIDs).
- :mod:`.simulated`: realistic PET DICOM series of simulated volumes (tests, ``petite simulate
  --format dicom``).

Layouts and tolerances: docs/dicom-and-regions.md.
"""
from .reader import DicomVolume, is_dicom_folder, read_series, reading
from .series import find_series
from .suv import suv_factor
from .writer import write_derived_series

__all__ = ["DicomVolume", "find_series", "is_dicom_folder", "read_series", "reading", "suv_factor",
           "write_derived_series"]
