"""PETITE library: parameter-efficient fine-tuning for multi-scanner PET scan-time reduction.

Plain Python (no Slicer imports). Volumes are (x, y, z) numpy arrays with a 4x4 voxel-to-world
affine in millimetres (nibabel/RAS convention); Slicer's (k, j, i) arrays are converted in
exactly one place, :mod:`PETITELib.slicer_bridge`.
"""

__version__ = "0.1.0"
