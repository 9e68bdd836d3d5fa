"""``petite check-cohort COHORT``: validate a cohort folder and list every problem, one per line.

Problems go to standard error (like every other command's errors), the summary of a clean
cohort to standard output.
"""
from __future__ import annotations

import sys

from ..data.cohort import check_cohort


def run_check_cohort(args) -> int:
    """Print each problem on stderr (one line naming the file) and return 2, or a one-line
    summary on stdout and return 0."""
    result = check_cohort(args.cohort)
    for problem in result.problems:
        sys.stderr.write(problem + "\n")
    if not result.ok:
        return 2
    print(result.summary())
    return 0


def register(subparsers) -> None:
    """Add the ``check-cohort`` sub-command."""
    parser = subparsers.add_parser(
        "check-cohort", help="validate a cohort folder (plain or BIDS-PET) and list every problem",
        description="Check every subject's short/long scans: readable 3D NIfTI, no NaN/Inf, no strongly "
                    "negative values, matching shape and affine, enough subjects for a train/validation "
                    "split. Prints one line per problem on stderr (exit 2) or a one-line summary on stdout (exit 0).")
    parser.add_argument("cohort", help="cohort folder: <subject>/short.nii.gz + long.nii.gz, or BIDS-PET")
    parser.set_defaults(func=run_check_cohort)
