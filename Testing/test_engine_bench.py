"""Benchmark plan, target checks and reports (fast); the whole protocol on a tiny run (slow)."""
import json

import pytest

from PETITELib.engine.bench import (BENCH_METHODS, bench_markdown, make_plan, method_statistics, parse_targets,
                                    run_bench, target_checks)
from PETITELib.engine.reports import bench_plot_png
from PETITELib.errors import PetiteError


def _row(psnr, ssim=0.9, seconds=None, mem=None, percent=None):
    return {"psnr": psnr, "ssim": ssim, "nrmse": 0.03, "psnr_whole": psnr + 5, "ssim_whole": 0.95,
            "nrmse_whole": 0.02, "seconds": seconds, "peak_mem_mb": mem, "percent": percent,
            "sd": {"psnr": 0.1}}


def _result():
    methods = {"input": _row(28.0, 0.90), "no-ft": _row(28.5, 0.91), "full": _row(30.5, 0.93, 100, 1000, 100.0)}
    for name in BENCH_METHODS[1:-1]:
        methods[name] = _row(29.5, 0.92, 60, 700, 0.5)
    methods["petite"] = _row(30.45, 0.93, 50, 450, 0.3)
    source = {"base": {"psnr": 29.0, "ssim": 0.9}, "input": {"psnr": 27.5, "ssim": 0.88}}
    return {"methods": methods, "source_validation": source, "targets": target_checks(methods, source),
            "config": {"backbone": "unetr", "preset": "cpu", "quick": True, "source_scanner": 1,
                       "target_scanners": [4], "simulate_mode": "fast", "target_train": 10, "target_val": 2},
            "machine": {"device": "cpu (2 threads)"}, "test_subjects": ["sub-013"], "wall_seconds": 600.0,
            "memory_note": "CPU peak RSS above the start"}


def test_target_checks_measure_every_target():
    checks = _result()["targets"]
    assert checks["petite_minus_input_psnr_db"] == pytest.approx(2.45)
    assert checks["petite_minus_input_psnr_db_ok"] and checks["petite_ssim_above_input_ok"]
    assert checks["source_base_beats_input_ok"]
    assert checks["petite_recovery_of_full_gain"] == pytest.approx(1.95 / 2.0)
    assert checks["petite_recovery_ok"] and checks["every_peft_beats_no_ft_ok"]
    assert checks["petite_over_full_peak_mem"] == pytest.approx(0.45) and checks["petite_memory_ok"]
    assert checks["petite_over_full_wall_time"] == pytest.approx(0.5) and checks["petite_time_ok"]


def test_reports_list_every_method():
    result = _result()
    markdown = bench_markdown(result)
    for name in ("input", "no-ft", *BENCH_METHODS):
        assert f"| {name} |" in markdown
    assert "petite_recovery_ok: True" in markdown
    assert bench_plot_png(result)[:4] == b"\x89PNG"


def test_plans():
    quick = make_plan("unetr", "cpu", quick=True)
    assert quick.simulate_mode == "fast" and quick.target_train == 10 and quick.methods == BENCH_METHODS
    full = make_plan("cvtgan", "paper")
    assert full.simulate_mode == "full" and full.source_subjects == 45 and full.target_val == 15
    with pytest.raises(PetiteError, match="unknown method"):
        make_plan("unetr", "cpu", methods=("dora",))


def test_the_cpu_plan_shares_the_model_zoo_s_cohorts_and_models():
    from PETITELib.engine.scanner_gap import gap_steps
    from PETITELib.engine.zoo_rebuild import ZooRecipe, recipe_steps

    plan, recipe = make_plan("unetr", "cpu", targets=(2, 3, 4, 5)), ZooRecipe()
    assert (plan.source_seed, plan.source_subjects, plan.target_seed) == (recipe.source_seed, recipe.source_subjects,
                                                                          recipe.target_seed)
    assert plan.target_train + plan.target_val == recipe.finetune_subjects
    assert plan.target_train + plan.target_val + plan.target_test == recipe.target_subjects
    finetune = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in plan.finetune.items())
    assert all(f"{o} {v}" in " ".join(recipe.finetune_options) for o, v in
               zip(finetune.split()[::2], finetune.split()[1::2]))
    adapter = recipe_steps(recipe)["scanner4"].arguments
    full = gap_steps(recipe)["full-scanner4"].arguments
    assert adapter[adapter.index("--out") + 1].endswith(plan.model_file(4, "petite"))
    assert full[full.index("--out") + 1].endswith(plan.model_file(4, "full"))
    assert parse_targets("5,2") == (2, 5)
    with pytest.raises(PetiteError, match="--targets: scanner 1 is the source"):
        parse_targets("1,4")
    with pytest.raises(PetiteError, match="--targets: unknown scanner '7'"):
        parse_targets("7")


def test_method_statistics_pair_every_method_with_no_ft_and_petite_with_full():
    subjects = [f"sub-{i:03d}" for i in range(1, 6)]
    methods = {name: {"per_subject_psnr": {s: base + 0.1 * i for i, s in enumerate(subjects)}}
               for name, base in (("input", 27.0), ("no-ft", 30.0), ("full", 31.0), ("lora", 30.5), ("petite", 30.9))}
    statistics = method_statistics(methods)
    assert set(statistics) == {"petite_vs_full", "petite_vs_no-ft", "no-ft_vs_input", "full_vs_no-ft", "lora_vs_no-ft"}
    assert statistics["petite_vs_full"]["mean"] == pytest.approx(-0.1)
    assert statistics["full_vs_no-ft"]["mean"] == pytest.approx(1.0)


@pytest.mark.slow
def test_tiny_bench_runs_end_to_end(tmp_path):
    from dataclasses import replace

    plan = replace(make_plan("cvtgan", "cpu", quick=True, device="cpu", methods=("full", "petite")),
                   source_subjects=3, source_val=1, target_train=2, target_val=1, target_test=1,
                   pretrain=dict(epochs=1, crops_per_subject=1, batch_size=2),
                   finetune=dict(epochs=1, crops_per_subject=1, batch_size=2))
    run_bench(plan, tmp_path / "result.json")
    result = json.loads((tmp_path / "result.json").read_text())
    assert list(result["methods"]) == ["input", "no-ft", "full", "petite"]
    assert list(result["by_target"]) == ["4"] and result["by_target"]["4"]["methods"] == result["methods"]
    assert result["methods"]["petite"]["curve"] and "petite_vs_full" in result["statistics"]
    for key in ("percent", "psnr", "ssim", "nrmse", "psnr_whole", "ssim_whole", "nrmse_whole", "seconds",
                "peak_mem_mb", "psnr_truth", "ssim_truth"):
        assert result["methods"]["petite"][key] is not None, key
    assert (tmp_path / "result.md").exists() and (tmp_path / "result.png").exists()


def test_bench_refuses_a_base_of_another_backbone_before_any_work(tmp_path):
    from PETITELib.backbones import build_backbone
    from PETITELib.peft import save_base_model

    base = tmp_path / "cvtgan.safetensors"
    save_base_model(base, build_backbone("cvtgan", "cpu"))
    plan = make_plan("unetr", "cpu", quick=True, base=str(base))
    with pytest.raises(PetiteError, match=r"is a cvtgan \(cpu\) base model, not unetr \(cpu\)"):
        run_bench(plan, tmp_path / "r.json")
    assert not (tmp_path / "r_work").exists()
