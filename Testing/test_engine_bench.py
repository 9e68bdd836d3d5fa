"""Benchmark plan, target checks and reports (fast); the whole protocol on a tiny run (slow)."""
import json

import pytest

from PETITELib.engine.bench import (BENCH_METHODS, SECONDARY_METHODS, SWEEP_FACTORS, bench_markdown,
                                    choose_learning_rate, make_plan, method_statistics, parse_lr_factors,
                                    parse_targets, run_bench, run_child, target_checks)
from PETITELib.engine.reports import bench_curves_png, bench_plot_png
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
    assert checks["petite_over_full_cpu_time"] is None  # runs without CPU time are judged by wall time


def test_the_time_target_is_judged_by_cpu_time_where_both_runs_recorded_it(tmp_path):
    from PETITELib.reports.benchmarks import targets

    result = _result()
    methods = result["methods"]
    methods["petite"].update(seconds=150, cpu_seconds=220.0)  # paused for a while: wall time 1.5x Full-FT's
    methods["full"].update(cpu_seconds=400.0)
    checks = result["targets"] = target_checks(methods, result["source_validation"])
    assert checks["petite_over_full_wall_time"] == pytest.approx(1.5)
    assert checks["petite_over_full_cpu_time"] == pytest.approx(0.55) and checks["petite_time_ok"]
    (tmp_path / "r.json").write_text(json.dumps(result), encoding="utf-8")
    assert "its CPU time 0.55x (wall time 1.50x) (target 0.6x: met)" in targets(tmp_path, "r.json")
    methods["full"]["cpu_seconds"] = 200.0
    assert not target_checks(methods, result["source_validation"])["petite_time_ok"]


def test_reports_list_every_method():
    result = _result()
    markdown = bench_markdown(result)
    for name in ("input", "no-ft", *BENCH_METHODS):
        assert f"| {name} |" in markdown
    assert "petite_recovery_ok: True" in markdown and "Made by" not in markdown
    result["command"] = "petite bench --backbone unetr --out r.json"
    assert "Made by `petite bench --backbone unetr --out r.json`." in bench_markdown(result)
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
    assert adapter[adapter.index("--out") + 1].endswith(plan.model_file(4, "petite", recipe.adapter_lr))
    assert recipe.adapter_lr in plan.sweep("petite")  # the bench's sweep reuses the zoo's adapters
    assert full[full.index("--out") + 1].endswith(plan.model_file(4, "full", plan.sweep("full")[0]))
    assert parse_targets("5,2,5") == (5, 2)  # the order given: the first is the main target
    with pytest.raises(PetiteError, match="--targets: scanner 1 is the source"):
        parse_targets("1,4")
    with pytest.raises(PetiteError, match="--targets: unknown scanner '7'"):
        parse_targets("7")


def test_full_plans_sweep_learning_rates_on_the_main_target_only():
    plan = make_plan("unetr", "cpu", targets=(4, 2, 3, 5))
    assert plan.lr_factors == SWEEP_FACTORS and plan.finetune["patience"] > 0
    assert plan.sweep("petite") == [0.001, 0.003, 0.01] and plan.sweep("adapter") == [0.01, 0.03, 0.1]
    assert plan.methods_for(4) == BENCH_METHODS and plan.methods_for(2) == SECONDARY_METHODS
    assert plan.model_file(4, "lora", 0.003) == "unetr-cpu-scanner4-lora-lr0.003.safetensors"
    quick = make_plan("cvtgan", "cpu", quick=True, targets=(4, 5))
    assert quick.lr_factors == (1.0,) and quick.methods_for(5) == BENCH_METHODS
    chosen = make_plan("unetr", "paper", lr_factors=(1.0, 2.0), secondary_methods=("petite",))
    assert chosen.sweep("full") == [0.001, 0.002] and chosen.methods_for(5) == ("petite",)
    assert parse_lr_factors("1, 3,10,3") == (1.0, 3.0, 10.0)
    for bad in ("", "0", "-1", "a,b", "inf"):
        with pytest.raises(PetiteError, match="--lr-factors"):
            parse_lr_factors(bad)


def _training(curve, budget=24):
    history = [{"epoch": e, "val_psnr": v} for e, v in curve]
    return {"history": history, "best_epoch": max(curve, key=lambda c: c[1])[0] if curve else 0,
            "epochs": curve[-1][0] if curve else 0, "settings": {"epochs": budget}, "wall_seconds": 10.0}


def test_full_ft_petite_and_fullres_are_trained_first_within_a_target():
    from PETITELib.engine.bench import run_order

    rates = {"layernorm": [1e-3], "full": [1e-3, 3e-3], "lora": [1e-3], "petite": [1e-3, 1e-2], "fullres": [3e-3]}
    assert run_order(rates) == [("full", 1e-3), ("full", 3e-3), ("petite", 1e-3), ("petite", 1e-2),
                                ("fullres", 3e-3), ("layernorm", 1e-3), ("lora", 1e-3)]
    assert run_order({"petite": [1e-3]}) == [("petite", 1e-3)]


def test_the_other_targets_are_trained_before_the_main_target_s_other_methods():
    from PETITELib.engine.bench import training_passes

    plan = make_plan("unetr", "cpu", targets=(4, 2, 3))
    assert training_passes(plan) == [(4, ("full", "fullres", "petite")), (2, ("full", "petite")),
                                     (3, ("full", "petite")),
                                     (4, ("layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "gvpt"))]
    # a secondary method outside FIRST_METHODS joins the early pass: its rate is chosen there
    plan = make_plan("cvtgan", "cpu", quick=True, methods=("full", "bitfit", "lora"), targets=(4, 5),
                     lr_factors=(1.0, 3.0), secondary_methods=("lora",))
    assert training_passes(plan) == [(4, ("full", "lora")), (5, ("lora",)), (4, ("bitfit",))]
    assert training_passes(make_plan("unetr", "cpu", quick=True, methods=("bitfit", "petite"))) == [
        (4, ("petite",)), (4, ("bitfit",))]


def test_the_sweep_keeps_the_best_validation_run_and_the_earlier_rate_on_ties():
    runs = {0.001: _training([[4, 26.0], [8, 26.2]]), 0.003: _training([[4, 26.3], [8, 26.1], [12, 26.05]]),
            0.01: _training([[4, float("nan")]])}
    lr, sweep = choose_learning_rate(runs)
    assert lr == 0.003 and [e["lr"] for e in sweep] == [0.001, 0.003, 0.01]
    assert sweep[1] == {"lr": 0.003, "best_val_psnr": 26.3, "best_epoch": 4, "epochs_run": 12, "epochs_budget": 24,
                        "seconds": 10.0, "curve": [[4, 26.3], [8, 26.1], [12, 26.05]]}
    assert sweep[2]["best_val_psnr"] is None  # a diverged run never wins
    assert choose_learning_rate({0.01: _training([[4, 26.0]]), 0.03: _training([[4, 26.0]])})[0] == 0.01
    assert choose_learning_rate({0.01: _training([])})[0] == 0.01


def test_checks_on_paired_differences_and_on_every_model_against_the_short_scan():
    methods = {"input": {"psnr": 28.0, "ssim": 0.90, "psnr_truth": 20.0, "ssim_truth": 0.5},
               "no-ft": {"psnr": 29.0, "ssim": 0.92, "psnr_truth": 21.0, "ssim_truth": 0.6},
               "full": {"psnr": 30.0, "ssim": 0.93, "psnr_truth": 19.5, "ssim_truth": 0.7},
               "lora": {"psnr": 29.5, "ssim": 0.92, "psnr_truth": 21.0, "ssim_truth": 0.6},
               "petite": {"psnr": 29.9, "ssim": 0.93, "psnr_truth": 21.5, "ssim_truth": 0.6}}
    statistics = {"lora_vs_no-ft": {"ci95": [-0.01, 1.0]}, "petite_vs_no-ft": {"ci95": [0.5, 1.2]},
                  "petite_vs_full": {"mean": -0.1, "significant": True}}
    checks = target_checks(methods, {}, statistics)
    assert checks["models_not_above_input"] == ["full (psnr_truth)"] and not checks["every_model_beats_input_ok"]
    assert checks["peft_methods_not_significantly_above_no_ft"] == ["lora"]
    assert not checks["every_peft_significantly_above_no_ft_ok"] and not checks["petite_not_significantly_below_full_ok"]
    statistics["petite_vs_full"]["significant"] = False
    assert target_checks(methods, {}, statistics)["petite_not_significantly_below_full_ok"]


def test_the_report_shows_each_sweep_and_the_curves_figure_draws_every_run():
    result = _result()
    sweep = [{"lr": lr, "best_val_psnr": 26.0 + lr, "best_epoch": 8, "epochs_run": 16, "seconds": 5.0,
              "curve": [[4, 25.9], [8, 26.0 + lr], [12, 25.95]]} for lr in (0.001, 0.003)]
    result["methods"]["petite"].update(lr=0.003, lr_table3=0.001, sweep=sweep, curve=sweep[1]["curve"])
    markdown = bench_markdown(result)
    assert "| petite | 0.001 | 0.001: 26.001 (8/16); **0.003: 26.003 (8/16)** | 0.003 |" in markdown
    assert bench_curves_png(result)[:4] == b"\x89PNG"


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

    plan = replace(make_plan("cvtgan", "cpu", quick=True, device="cpu", methods=("full", "petite"), targets=(4, 5),
                             lr_factors=(1.0, 3.0), secondary_methods=("petite",)),
                   source_subjects=3, source_val=1, target_train=2, target_val=1, target_test=2,
                   pretrain=dict(epochs=1, crops_per_subject=1, batch_size=2),
                   finetune=dict(epochs=1, crops_per_subject=1, batch_size=2))
    run_bench(plan, tmp_path / "result.json")
    result = json.loads((tmp_path / "result.json").read_text())
    assert list(result["methods"]) == ["input", "no-ft", "full", "petite"]
    assert list(result["by_target"]) == ["4", "5"] and result["by_target"]["4"]["methods"] == result["methods"]
    assert list(result["by_target"]["5"]["methods"]) == ["input", "no-ft", "petite"]
    petite = result["methods"]["petite"]
    assert petite["curve"] and "petite_vs_full" in result["statistics"]
    assert [run["lr"] for run in petite["sweep"]] == [0.001, 0.003] and petite["lr"] in (0.001, 0.003)
    assert [run["lr"] for run in result["by_target"]["5"]["methods"]["petite"]["sweep"]] == [petite["lr"]]
    assert (tmp_path / "result-curves.png").exists()
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


@pytest.mark.parametrize("has_wait4", [True, False])
def test_a_child_command_runs_reports_its_peak_memory_where_the_os_can_and_fails_in_one_line(monkeypatch, has_wait4):
    import os

    if not has_wait4:  # as on Windows, which has no os.wait4
        monkeypatch.delattr(os, "wait4", raising=False)
    peak = run_child(["methods", "--backbone", "unetr"])["process_peak_rss_mb"]
    if has_wait4:
        assert peak > 10.0  # a Python process with torch imported
    else:
        assert peak is None
    with pytest.raises(PetiteError, match=r"petite methods failed \(exit 2\)"):
        run_child(["methods"])


# --- the ledger: resume without the work folder -------------------------------------------------

def _tiny_base(tmp_path):
    """An (untrained) CvT-GAN cpu base model file outside any work folder: no pre-training."""
    from PETITELib.backbones import build_backbone
    from PETITELib.peft import save_base_model

    base = tmp_path / "base.safetensors"
    save_base_model(base, build_backbone("cvtgan", "cpu"))
    return base


def _ledger_plan(base, **changes):
    from dataclasses import replace

    plan = make_plan("cvtgan", "cpu", quick=True, device="cpu", methods=("petite",), lr_factors=(1.0, 3.0),
                     base=str(base))
    return replace(plan, target_train=1, target_val=1, target_test=1,
                   finetune=dict(epochs=1, crops_per_subject=1, batch_size=1), **changes)


def _scores(psnr, subjects=("sub-013", "sub-014", "sub-015")):
    """Held-out scores as evaluate_models returns them (3 subjects, PSNR ``psnr`` + 0.1 per subject)."""
    from PETITELib.engine.tables import mean_sd

    per_subject = {s: {"psnr": psnr + 0.1 * i, "ssim": 0.9 + 0.001 * i, "nrmse": 0.03, "psnr_whole": psnr + 5,
                       "ssim_whole": 0.95, "nrmse_whole": 0.02} for i, s in enumerate(subjects)}
    return {"per_subject": per_subject, **mean_sd(per_subject), "seconds": 1.5}


def test_the_kept_rate_is_the_best_on_validation_even_when_another_run_scores_better_on_the_test_subjects(tmp_path):
    from dataclasses import replace

    from PETITELib.engine.bench import ledger_config
    from PETITELib.engine.bench_ledger import BenchLedger
    from PETITELib.peft import base_model_sha256, parse_spec

    base = _tiny_base(tmp_path)
    plan = _ledger_plan(base, methods=("full", "petite"))
    ledger = BenchLedger.open(tmp_path / "r.ledger.json", ledger_config(plan))
    ledger.bind_base(base_model_sha256(base))
    ledger.start_session({"device": "cuda (elsewhere)", "platform": "another machine"})
    ledger.set_baseline(4, {"input": _scores(25.0), "no-ft": _scores(28.0)})
    for method in plan.methods:  # the first rate validates worse but scores far better on the test subjects
        low, high = plan.sweep(method)
        spec = "full" if method == "full" else parse_spec(method, "cvtgan", "cpu").canonical
        ledger.add_run(4, method, low, {**_training([[1, 26.0]]), "percent": 1.0, "spec": spec}, {}, _scores(77.777))
        ledger.add_run(4, method, high, {**_training([[1, 26.5]]), "percent": 1.0, "spec": spec},
                       {"process_peak_rss_mb": 99.0}, _scores(29.0))
    # every run is in the ledger: the result is assembled from it, nothing is simulated or trained
    result = run_bench(plan, tmp_path / "r.json", work=tmp_path / "work")
    assert not (tmp_path / "work" / "data").exists() and not (tmp_path / "work" / "models").exists()
    for method in plan.methods:
        row = result["methods"][method]
        assert row["lr"] == plan.sweep(method)[1] and [e["lr"] for e in row["sweep"]] == plan.sweep(method)
        assert row["psnr"] == pytest.approx(29.1) and row["process_peak_rss_mb"] == 99.0
        assert row["per_subject_psnr"] == {"sub-013": 29.0, "sub-014": 29.1, "sub-015": pytest.approx(29.2)}
    assert result["methods"]["input"]["psnr"] == pytest.approx(25.1) and result["test_subjects"][0] == "sub-013"
    assert "petite_vs_full" in result["statistics"] and result["targets"]["petite_minus_input_psnr_db"] > 3.9
    for text in ((tmp_path / "r.json").read_text(), (tmp_path / "r.md").read_text()):
        assert "77.7" not in text and "77.8" not in text  # the runs not kept are never reported
    assert [s["machine"]["platform"] for s in result["sessions"]][0] == "another machine"
    assert len(result["sessions"]) == 2 and "over 2 sessions resumed from" in (tmp_path / "r.md").read_text()
    # a plan with a method fewer (or more) resumes from the same ledger and keeps its runs
    fewer = run_bench(replace(plan, methods=("petite",)), tmp_path / "r.json", work=tmp_path / "work", overwrite=True)
    assert set(fewer["methods"]) == {"input", "no-ft", "petite"} and fewer["methods"]["petite"]["psnr"] == pytest.approx(29.1)
    assert json.loads((tmp_path / "r.ledger.json").read_text())["config"]["methods"] == ["petite"]
    # a run that trained another spec than its method means now (a preset changed) is refused
    content = json.loads((tmp_path / "r.ledger.json").read_text())
    content["targets"]["4"]["runs"][-1]["training"]["spec"] = "enc=lora(alpha=4,r=4)"
    (tmp_path / "r.ledger.json").write_text(json.dumps(content))
    with pytest.raises(PetiteError, match=r"r\.ledger\.json: its petite run on scanner 4 at [0-9.e-]+ trained "
                                          r"'enc=lora\(alpha=4,r=4\)', but petite is now 'enc=vpt"):
        run_bench(plan, tmp_path / "r.json", work=tmp_path / "work", overwrite=True)


def test_a_ledger_of_another_plan_or_base_is_refused_in_one_line_naming_it(tmp_path, capsys):
    from dataclasses import replace

    from PETITELib.cli import main
    from PETITELib.engine.bench import ledger_config
    from PETITELib.engine.bench_ledger import BenchLedger

    base = _tiny_base(tmp_path)
    plan, path = _ledger_plan(base), tmp_path / "kept" / "r.ledger.json"
    path.parent.mkdir()
    other = BenchLedger.open(path, ledger_config(replace(plan, lr_factors=(1.0,))))
    other.start_session({})
    other.save()
    with pytest.raises(PetiteError, match=r"r\.ledger\.json: the ledger was made for another benchmark plan "
                                          r"\(lr_factors \[1\.0\] here \[1\.0, 3\.0\]\)") as error:
        run_bench(plan, tmp_path / "r.json", ledger=path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    path.unlink()
    other = BenchLedger.open(path, ledger_config(plan))  # the same plan, made with another base
    other.bind_base("0" * 64)
    other.start_session({})
    other.save()
    with pytest.raises(PetiteError, match=r"r\.ledger\.json: the ledger was made with another base model"):
        run_bench(plan, tmp_path / "r.json", ledger=path)
    assert not (tmp_path / "r_work").exists()  # refused before any work
    with pytest.raises(PetiteError, match=r"r\.ledger\.json: its runs were fine-tuned from a base model \(SHA-256 "
                                          r"000000000000\.\.\.\) that .*base\.safetensors no longer holds"):
        run_bench(replace(plan, base=None), tmp_path / "r.json", ledger=path)  # not pre-trained again
    (tmp_path / "quick.ledger.json").write_text(path.read_text())  # where a bench of quick.json keeps its ledger
    code = main(["bench", "--backbone", "cvtgan", "--quick", "--seed", "7", "--base", str(base), "--out",
                 str(tmp_path / "quick.json"), "--ledger", str(path), "--quiet"])
    assert code == 2 and "the ledger was made for another benchmark plan" in capsys.readouterr().err
    with pytest.raises(PetiteError, match=r"quick\.ledger\.json: the ledger was made for another"):
        run_bench(make_plan("cvtgan", "cpu", quick=True, base=str(base)), tmp_path / "quick.json")


def _interrupt_and_resume_without_the_work_folder(tmp_path):
    """Run a bench of :func:`_ledger_plan` (PETITE at two rates on scanner 4), cancel it when the
    second run starts, delete the work folder and run it again; returns (plan, ledger before the
    resume, ledger after it, result)."""
    import shutil

    from PETITELib.progress import Cancelled, CancelToken

    base, out, work = _tiny_base(tmp_path), tmp_path / "r.json", tmp_path / "work"
    plan = _ledger_plan(base)
    cancel = CancelToken()

    def stop_at_the_second_run(event):
        if event.stage == "bench" and f"peak learning rate {plan.sweep('petite')[1]:g}" in event.message:
            cancel.cancel()

    with pytest.raises(Cancelled):
        run_bench(plan, out, work=work, progress=stop_at_the_second_run, cancel=cancel)
    assert not out.exists()
    before = json.loads((tmp_path / "r.ledger.json").read_text())
    shutil.rmtree(work)  # the machine is lost: only the ledger is kept
    result = run_bench(plan, out, work=work)
    assert not (work / "models" / plan.model_file(4, "petite", plan.sweep("petite")[0])).exists()  # not trained again
    return plan, before, json.loads((tmp_path / "r.ledger.json").read_text()), result


def _check_the_resume(plan, before, after, result):
    """What a bench resumed from its ledger must give (see _interrupt_and_resume_without_the_work_folder)."""
    low, high = plan.sweep("petite")
    runs = before["targets"]["4"]["runs"]
    assert [(r["method"], r["lr"], r["session"]) for r in runs] == [("petite", low, 1)]
    assert before["targets"]["4"]["baseline"]["no-ft"]["per_subject"] and before["sessions"][0]["runs"] == 1
    assert after["targets"]["4"]["runs"][0] == runs[0]
    assert after["targets"]["4"]["baseline"] == before["targets"]["4"]["baseline"]
    assert [(r["lr"], r["session"]) for r in after["targets"]["4"]["runs"]] == [(low, 1), (high, 2)]
    petite = result["methods"]["petite"]
    kept = next(r for r in after["targets"]["4"]["runs"] if r["lr"] == petite["lr"])
    assert petite["per_subject_psnr"] == {s: m["psnr"] for s, m in kept["scores"]["per_subject"].items()}
    assert result["methods"]["input"]["per_subject_psnr"] == {
        s: m["psnr"] for s, m in before["targets"]["4"]["baseline"]["input"]["per_subject"].items()}
    assert [e["lr"] for e in petite["sweep"]] == [low, high] and len(result["sessions"]) == 2
    assert result["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in after["sessions"]), abs=0.2)


def test_a_bench_interrupted_resumes_from_its_ledger_alone_without_the_work_folder(tmp_path, monkeypatch,
                                                                                    one_intra_op_thread):
    """Fast: each fine-tuning child is replaced by an in-process stand-in (a PETITE adapter with
    random weights, scaled by the rate, and a made-up training record); simulation and scoring are real."""
    import torch

    from PETITELib.engine.models import load_base
    from PETITELib.peft import apply_peft, save_adapter
    from PETITELib.progress import check_cancel

    trained = []

    def stand_in(command, out, arguments, cancel=None):
        check_cancel(cancel)
        lr = float(next(a for a in arguments if a.startswith("--lr=")).split("=")[1])
        trained.append(lr)
        model = load_base(arguments[arguments.index("--base") + 1], torch.device("cpu")).model
        spec = apply_peft(model, "petite")
        torch.manual_seed(len(trained))
        with torch.no_grad():
            for parameter in (p for p in model.parameters() if p.requires_grad):
                parameter.add_(torch.randn_like(parameter) * lr)
        save_adapter(out, model, training={**_training([[1, 20.0 + lr]]), "spec": spec.canonical, "percent": 0.3})
        return {"process_peak_rss_mb": 1.0}

    monkeypatch.setattr("PETITELib.engine.bench.train_in_child", stand_in)
    plan, before, after, result = _interrupt_and_resume_without_the_work_folder(tmp_path)
    assert trained == plan.sweep("petite")  # the second session trained the second rate only
    _check_the_resume(plan, before, after, result)
    assert result["methods"]["petite"]["lr"] == plan.sweep("petite")[1]  # its validation PSNR is the better
    scores = [run["scores"]["mean"]["psnr"] for run in after["targets"]["4"]["runs"]]
    assert scores[0] != scores[1] and result["methods"]["petite"]["psnr"] == scores[1]


@pytest.mark.slow
def test_a_real_bench_interrupted_resumes_from_its_ledger_alone_without_the_work_folder(tmp_path, one_intra_op_thread):
    """The same with real fine-tuning children (a few minutes on 2 loaded cores)."""
    _check_the_resume(*_interrupt_and_resume_without_the_work_folder(tmp_path))


def test_the_committed_ledger_resumes_with_the_documented_command():
    """docs/benchmarks/unetr-cpu.ledger.json carries the UNETR benchmark across sessions: the plan
    and base of the command in docs/benchmarks/README.md must still accept it."""
    from pathlib import Path

    from PETITELib.engine.bench import ledger_config
    from PETITELib.engine.bench_ledger import BenchLedger
    from PETITELib.peft import base_model_sha256

    repo = Path(__file__).resolve().parents[1]
    command = ("petite bench --backbone unetr --preset cpu --targets 4,2,3,5 --base "
               "Resources/Models/unetr-cpu-base.safetensors")
    assert command in (repo / "docs" / "benchmarks" / "README.md").read_text(encoding="utf-8").replace(" \\\n  ", " ")
    plan = make_plan("unetr", "cpu", targets=(4, 2, 3, 5), base=str(repo / "Resources/Models/unetr-cpu-base.safetensors"))
    ledger = BenchLedger.open(repo / "docs" / "benchmarks" / "unetr-cpu.ledger.json", ledger_config(plan))
    ledger.bind_base(base_model_sha256(plan.base))
    assert ledger.baseline(4) is not None
