"""Generated text in the docs: every section matches its committed source; a hand edit is caught."""
import json
import re
import shutil
from pathlib import Path

import pytest

from PETITELib.reports import GENERATORS, documents, render, update_docs
from PETITELib.reports.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def test_every_generated_section_in_the_docs_matches_its_source():
    assert update_docs(REPO, check=True) == []  # run `python -m PETITELib.reports docs` after a change
    used = {name for path in documents(REPO) for name in GENERATORS
            if f"<!-- petite:{name} -->" in path.read_text(encoding="utf-8")}
    assert used == set(GENERATORS)  # every generator feeds at least one page


@pytest.mark.parametrize("page,figure", [
    ("docs/simulator.md", r"(x 1\.04)"),  # from the code's scanner table
    ("README.md", r"^\| PETITE \| [0-9.]+ % \| ([0-9.]+) ± "),  # a benchmark result
    ("docs/zoo.md", r"^\| `scanner4` \|.*\| ([+-][0-9.]+ dB) \|$"),  # from the zoo's manifest
    ("docs/training.md", r"^\| SSF \| (1e-2) / 1e-5 \|"),  # the hyperparameter table
])
def test_a_figure_edited_by_hand_is_reported(tmp_path, page, figure):
    """In a copy of the docs and their sources, a hand edit of a generated figure (the last digit
    of the one ``figure`` group matches) is reported by the check and undone by regenerating."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "README.md", root / "README.md")
    (root / "Resources" / "Models").mkdir(parents=True)
    shutil.copy(REPO / "Resources" / "Models" / "manifest.json", root / "Resources" / "Models" / "manifest.json")
    assert update_docs(root, check=True) == []
    path = root / page
    text = path.read_text(encoding="utf-8")
    [match] = re.finditer(figure, text, re.M)
    start, end = match.span(1)
    last = max(i for i in range(start, end) if text[i].isdigit())
    path.write_text(text[:last] + str((int(text[last]) + 1) % 10) + text[last + 1:], encoding="utf-8")
    assert update_docs(root, check=True) == [path]
    assert main(["docs", "--check", "--root", str(root)]) == 1  # what CI and a contributor run
    assert update_docs(root) == [path] and path.read_text(encoding="utf-8") == text  # regenerated


def test_unknown_sections_are_left_alone():
    text = "a\n<!-- petite:not-a-generator -->\nkept\n<!-- /petite:not-a-generator -->\n"
    assert render(text, REPO) == text


def test_the_regional_table_shows_each_method_and_petites_regional_targets(tmp_path):
    from PETITELib.reports.benchmarks import regional_table

    row = dict(psnr=30.0, ssim=0.9, regional_abs_bias_pct=3.25, suvr_abs_bias_pct=1.5, gw_contrast=2.9,
               gw_contrast_vs_long=0.9871)
    result = {"methods": {"input": dict(row, suvr_abs_bias_pct=4.0), "petite": row},
              "targets": {"petite_suvr_bias_ok": True, "petite_gw_contrast_ok": False}}
    (tmp_path / "r.json").write_text(json.dumps(result), encoding="utf-8")
    table = regional_table(tmp_path, "r.json")
    assert "| short scan (input) | 3.25 | 4.00 | 0.9871 |" in table and "| PETITE | 3.25 | 1.50 | 0.9871 |" in table
    assert "SUVR bias met, contrast not met" in table
    del result["methods"]["petite"]["regional_abs_bias_pct"], result["methods"]["input"]["regional_abs_bias_pct"]
    (tmp_path / "r.json").write_text(json.dumps(result), encoding="utf-8")
    assert "no regional figures yet" in regional_table(tmp_path, "r.json")


def test_the_recovery_table_gives_each_target_petites_share_of_full_ft_s_gain(tmp_path):
    from PETITELib.reports.benchmarks import recovery_table, significance_table, sweep_table

    def target(noft, full, petite):
        methods = {name: {"psnr": value} for name, value in
                   (("input", 25.0), ("no-ft", noft), ("full", full), ("petite", petite))}
        statistics = {"petite_vs_full": {"mean": petite - full, "ci95": [petite - full - 0.1, petite - full + 0.1],
                                         "wilcoxon_p": 0.3, "significant": False},
                      "petite_vs_no-ft": {"mean": petite - noft, "ci95": [0.1, 0.5], "wilcoxon_p": 0.002,
                                          "significant": True}}
        return {"methods": methods, "statistics": statistics, "test_subjects": ["a", "b", "c"]}

    result = {"by_target": {"4": target(29.0, 30.0, 29.96), "2": target(29.0, 29.4, 29.1)},
              "config": {"main_target": 4}}
    result.update(methods=result["by_target"]["4"]["methods"], statistics=result["by_target"]["4"]["statistics"])
    (tmp_path / "r.json").write_text(json.dumps(result), encoding="utf-8")
    table = recovery_table(tmp_path, "r.json")
    assert "| 4 | 25.00 | 29.00 | 30.00 | 29.96 | +1.00 | 96 % | -0.040 [-0.140, +0.060], p 0.3 | " \
           "**+0.960 [+0.100, +0.500], p 0.002** | 3 |" in table
    assert "| 2 | 25.00 | 29.00 | 29.40 | 29.10 | +0.40 | 25 % |" in table
    assert "| Full-FT | - | - |" in significance_table(tmp_path, "r.json")
    assert "without a learning-rate sweep" in sweep_table(tmp_path, "r.json")


def test_the_recovery_summary_gives_one_row_per_file_and_target(tmp_path):
    from PETITELib.reports.benchmarks import recovery_summary

    def result(petite):
        methods = {"no-ft": {"psnr": 29.0}, "full": {"psnr": 30.0}, "petite": {"psnr": petite}}
        deficit = {"mean": petite - 30.0, "significant": petite < 29.9}
        return {"by_target": {"4": {"methods": methods, "statistics": {"petite_vs_full": deficit}}}}

    (tmp_path / "a.json").write_text(json.dumps(result(29.5)), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps(result(29.95)), encoding="utf-8")
    table = recovery_summary(tmp_path, ("a.json", "b.json"))
    assert "| `a.json` | 4 | 29.00 | 30.00 | 29.50 | 50 % | -0.50 (p < 0.05) |" in table
    assert "| `b.json` | 4 | 29.00 | 30.00 | 29.95 | 95 % | -0.05 (not significant) |" in table


def test_a_ledger_in_progress_shows_its_runs_with_validation_scores_only(tmp_path):
    from PETITELib.reports.benchmarks import ledger_progress

    config = {"target_scanners": [4, 2], "methods": ["full", "lora", "petite"], "lr_factors": [1.0, 3.0],
              "secondary_methods": ["full", "petite"]}
    run = {"method": "lora", "lr": 0.003, "training": {"history": [{"epoch": 4, "val_psnr": 26.5},
                                                                  {"epoch": 8, "val_psnr": 26.75}],
                                                      "best_epoch": 8, "epochs": 12},
           "scores": {"mean": {"psnr": 31.234}}}
    ledger = {"config": config, "targets": {"4": {"runs": [run]}},
              "sessions": [{"wall_seconds": 600.0, "machine": {"device": "cpu (2 threads)"}},
                           {"wall_seconds": 1200.0, "machine": {"device": "cpu (2 threads)"}, "runs": 1},
                           {"wall_seconds": 0.5, "machine": {"device": "cpu (2 threads)"}, "runs": 0}]}
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    (tmp_path / "docs" / "benchmarks" / "run.ledger.json").write_text(json.dumps(ledger))
    text = ledger_progress(tmp_path, "docs/benchmarks/run.ledger.json")
    assert ("1 of 8 fine-tuning runs finished, in 2 session(s) that fine-tuned and 1 that only scored or "
            "assembled (30 min on cpu (2 threads))") in text
    assert "- scanner 4: 1 of 6 runs: lora at 0.003 (best validation PSNR 26.750 dB, epoch 8 of 12)" in text
    assert "- scanner 2: 0 of 2 runs" in text
    assert "31.23" not in text  # held-out scores of a run the sweep may not keep are never shown
    assert ledger_progress(tmp_path, "docs/benchmarks/other.ledger.json") == \
        "`docs/benchmarks/other.ledger.json`: not started yet (no run finished).\n"


def test_the_results_table_shows_wall_and_cpu_time_and_a_dash_where_cpu_time_was_not_recorded(tmp_path):
    from PETITELib.reports.benchmarks import results_table

    def row(seconds, cpu_seconds):
        return {"psnr": 30.0, "ssim": 0.8, "sd": {"psnr": 1.0, "ssim": 0.01}, "percent": 0.9,
                "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mem_mb": 1000.0}

    result = {"config": {"backbone": "unetr", "preset": "cpu", "source_scanner": 1, "target_scanners": [4],
                         "simulate_mode": "full", "base": "b.safetensors", "target_train": 10, "target_test": 10},
              "machine": {"device": "cpu (2 threads)"},
              "methods": {"full": row(1200.4, 2300.6), "petite": row(2100.0, None)}}
    (tmp_path / "r.json").write_text(json.dumps(result), encoding="utf-8")
    table = results_table(tmp_path, "r.json")
    assert "| Full-FT | 0.9 % | 30.00 ± 1.00 | 0.800 ± 0.010 | 1200 | 2301 | 1000 |" in table
    assert "| PETITE | 0.9 % | 30.00 ± 1.00 | 0.800 ± 0.010 | 2100 | - | 1000 |" in table
