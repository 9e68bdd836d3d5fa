"""Data: scanner definitions, the PET simulator, cohort folders, normalisation and the training pipeline."""
