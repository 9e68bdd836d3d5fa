"""The one exception type users see: a one-line, actionable message."""


class PetiteError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback.

    The message should name the file (or option) and the problem, e.g.
    ``"scans/s01/short.nii.gz: contains NaN or Inf values"``.
    """


class Cancelled(PetiteError):
    """Raised inside a long job when its :class:`~PETITELib.progress.CancelToken` was cancelled."""
