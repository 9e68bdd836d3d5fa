"""The committed sources the generators read."""
from __future__ import annotations

import json
from pathlib import Path


def load_json(root: Path, relative: str) -> dict:
    """The JSON document at ``root / relative`` (a committed result under docs/benchmarks)."""
    return json.loads((Path(root) / relative).read_text(encoding="utf-8"))
