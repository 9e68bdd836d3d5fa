"""Generated text in the docs: tables and figures written between markers from committed sources.

A Markdown file under the repository (README.md, docs/**/*.md) may hold sections::

    <!-- petite:NAME -->
    ...generated text...
    <!-- /petite:NAME -->

``python -m PETITELib.reports docs`` rewrites every such section from its generator in
:data:`GENERATORS` (which read committed JSON files: ``docs/benchmarks/*.json``,
``Resources/Models/manifest.json``; or the code's own tables: scanners, hyperparameters, PEFT
parameter counts); ``--check`` only reports the files whose text differs (exit 1), which the test suite
runs so that no figure can drift from its source or be edited by hand.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List

from . import benchmarks
from .cost import accuracy_check, cost_summary, cost_tables
from .federated import federated_table
from .gain_by_layers import CVTGAN_GAIN, UNETR_GAIN, gain_table
from .hyperparameters import hyperparameter_tables
from .input_domain import output_ranges, slab_gains
from .methods import method_counts_table, ssf_sites_table
from .peft import backbone_sizes_table, peft_parameters_table
from .simulator import scanner_differences_table, scanner_gap_table, simulator_noise_table
from .spec_candidates import CVTGAN_CANDIDATES, candidates_table
from .zoo import zoo_models_table, zoo_recipe

GENERATORS: Dict[str, Callable[[Path], str]] = {
    "scanner-differences": scanner_differences_table,
    "simulator-noise": simulator_noise_table,
    "scanner-gap": scanner_gap_table,
    "peft-accuracy": accuracy_check,
    "peft-cost": cost_tables,
    "peft-cost-summary": cost_summary,
    "peft-method-counts": method_counts_table,
    "ssf-sites": ssf_sites_table,
    "federated-result": federated_table,
    "hyperparameters": hyperparameter_tables,
    "backbone-sizes": backbone_sizes_table,
    "peft-parameters": peft_parameters_table,
    "zoo-models": zoo_models_table,
    "zoo-recipe": zoo_recipe,
    "results": benchmarks.results_table,
    "regional-results": benchmarks.regional_table,
    "unetr-cpu-summary": partial(benchmarks.summary, relative=benchmarks.FULL_BENCHMARK),
    "unetr-cpu-targets": partial(benchmarks.targets, relative=benchmarks.FULL_BENCHMARK),
    "unetr-cpu-recovery": partial(benchmarks.recovery_table, relative=benchmarks.FULL_BENCHMARK),
    "unetr-cpu-sweep": partial(benchmarks.sweep_table, relative=benchmarks.FULL_BENCHMARK),
    "unetr-cpu-significance": partial(benchmarks.significance_table, relative=benchmarks.FULL_BENCHMARK),
    "cvtgan-cpu-summary": partial(benchmarks.summary, relative=benchmarks.CVTGAN_BENCHMARK),
    "cvtgan-cpu-targets": partial(benchmarks.targets, relative=benchmarks.CVTGAN_BENCHMARK),
    "cvtgan-cpu-recovery": partial(benchmarks.recovery_table, relative=benchmarks.CVTGAN_BENCHMARK),
    "cvtgan-cpu-sweep": partial(benchmarks.sweep_table, relative=benchmarks.CVTGAN_BENCHMARK),
    "cvtgan-cpu-significance": partial(benchmarks.significance_table, relative=benchmarks.CVTGAN_BENCHMARK),
    "recovery-summary": benchmarks.recovery_summary,
    "quick-unetr-cpu-summary": partial(benchmarks.summary, relative=benchmarks.QUICK_BENCHMARK),
    "quick-unetr-cpu-targets": partial(benchmarks.targets, relative=benchmarks.QUICK_BENCHMARK),
    "quick-unetr-cpu-smoke-summary": partial(benchmarks.summary, relative=benchmarks.QUICK_SMOKE_BENCHMARK),
    "quick-unetr-cpu-time": partial(benchmarks.wall_time, relative=benchmarks.QUICK_BENCHMARK),
    "bench-plans": benchmarks.bench_plans,
    "unetr-cpu-ledger": benchmarks.ledger_progress,
    "cvtgan-cpu-ledger": partial(benchmarks.ledger_progress, relative=benchmarks.CVTGAN_LEDGER),
    "input-domain-ranges": output_ranges,
    "input-domain-slabs": slab_gains,
    "unetr-gain-by-layers": partial(gain_table, relative=UNETR_GAIN),
    "cvtgan-gain-by-layers": partial(gain_table, relative=CVTGAN_GAIN),
    "cvtgan-spec-candidates": partial(candidates_table, relative=CVTGAN_CANDIDATES),
}
_SECTION = re.compile(r"(<!-- petite:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /petite:(?P=name) -->)", re.S)


def render(text: str, root: Path) -> str:
    """``text`` with every known section replaced by its generator's output (unknown names kept)."""
    def replace(match: re.Match) -> str:
        generator = GENERATORS.get(match.group("name"))
        if generator is None:
            return match.group(0)
        return match.group(1) + generator(root).rstrip("\n") + "\n" + match.group(4)
    return _SECTION.sub(replace, text)


def documents(root: Path) -> List[Path]:
    """The Markdown files that may hold generated sections: README.md and docs/**/*.md."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def update_docs(root: Path, check: bool = False) -> List[Path]:
    """Regenerate every section under ``root``; returns the files whose text changed (``check``:
    would change, nothing is written)."""
    changed = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        new = render(text, root)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed
