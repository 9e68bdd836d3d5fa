"""Shared by the Testing/test_bad_input_*.py modules: run a command that must be refused and check
the promises made for every refusal (exit 2, one line on stderr naming the file or option, no
traceback, inputs unchanged, nothing left behind), plus small in-domain test volumes and cohorts.
"""
import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest

from phantom_head import affine_for, short_and_long, write_plain_subject
from PETITELib.cli import main
from PETITELib.nifti_io import save_volume

# In the accepted input domain (docs/reliability.md), yet a single 64^3 tile: fast.
VOLUME_SHAPE = (64, 64, 40)


def sha256(path) -> str:
    """SHA-256 of a file's bytes (a folder: of every file below it, by relative name)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode() + b"\0" + item.read_bytes())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def listing(folder) -> set:
    """Every path below ``folder`` (hidden files, probes, locks and temporary files included)."""
    folder = Path(folder)
    if not folder.exists():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def refused(capsys, argv: Sequence[str], names: Iterable[str], inputs: Iterable = (),
            folders: Iterable = ()) -> str:
    """Run ``petite argv`` in this process and check the refusal; returns the error line.

    names: at least one must appear in the line (the file or option at fault). inputs: files or
    folders that must be byte-identical afterwards. folders: where nothing may appear or vanish
    (no output, no partial, temporary, probe or lock file).
    """
    inputs, folders = [Path(p) for p in inputs], [Path(f) for f in folders]
    hashes = {p: sha256(p) for p in inputs}
    before = {f: listing(f) for f in folders}
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    except BaseException as exc:  # what a user would see as a traceback
        pytest.fail(f"traceback instead of a one-line error: {type(exc).__name__}: {exc}")
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}, stderr: {captured.err[-600:]!r}"
    assert "Traceback" not in captured.err
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("petite: error: "), lines[0]
    names = [str(n) for n in names]
    assert any(n in lines[0] for n in names), f"{lines[0]!r} names none of {names}"
    for path, digest in hashes.items():
        assert path.exists() and sha256(path) == digest, f"{path} was modified"
    for folder, names_before in before.items():
        assert listing(folder) == names_before, f"{folder}: {sorted(listing(folder) ^ names_before)}"
    return lines[0]


def write_volume(path, shape=VOLUME_SHAPE, seed: int = 4, spacing=(2.0, 2.0, 2.4), which: str = "short") -> Path:
    """A phantom head scan (Bq/mL) at ``path``: ``which`` is short, long or truth."""
    short, long, truth = short_and_long(shape, seed=seed)
    array = {"short": short, "long": long, "truth": truth}[which]
    return save_volume(path, array, affine_for(spacing))


def write_cohort(root: Path, subjects: int = 3, shape=VOLUME_SHAPE) -> Path:
    """A clean plain cohort of phantom subjects ``root/sub-00i``."""
    for i in range(subjects):
        write_plain_subject(Path(root) / f"sub-{i:03d}", seed=i, shape=shape)
    return Path(root)


def cohort_files(root: Path) -> list:
    """Every file of a cohort folder (what a command reading it must leave untouched)."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def chattr(path, flag: str) -> None:
    """``chattr +i``/``-i`` on ``path``; skips the test where the file system does not allow it."""
    if os.system(f"chattr {flag} '{path}' 2>/dev/null") != 0:
        pytest.skip(f"chattr {flag} is not possible here (needs root and a file system with attributes)")


def uniform_noise(shape, low=5400.0, high=16800.0, seed=0) -> np.ndarray:
    """Uniform random values in [low, high) (the issue's out-of-domain examples)."""
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
