"""Generated text from committed ``petite bench`` results (docs/benchmarks/*.json).

Each function takes the repository root and the result file (relative to it) and returns Markdown:
the results table the README quotes, a one-paragraph summary of the held-out scores, and the
benchmark's targets with what was measured.
"""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

FULL_BENCHMARK = "docs/benchmarks/unetr-cpu.json"
CVTGAN_BENCHMARK = "docs/benchmarks/cvtgan-cpu.json"
QUICK_BENCHMARK = "docs/benchmarks/quick-unetr-cpu.json"
QUICK_SMOKE_BENCHMARK = "docs/benchmarks/quick-unetr-cpu-smoke.json"

# How a method is named in prose and tables.
METHOD_NAMES = {"input": "short scan (input)", "no-ft": "No-FT (base alone)", "full": "Full-FT", "layernorm": "LayerNorm",
                "bitfit": "BitFit", "lora": "LoRA", "adapter": "Adapters", "ssf": "SSF", "vpt": "VPT", "gvpt": "gated VPT", "fullres": "full-resolution",
                "petite": "PETITE"}


def _setting(result: dict) -> str:
    config = result["config"]
    epochs = result["methods"].get("petite", {}).get("epochs")
    base = (f"the base `{config['base']}`" if config.get("base") else
            f"a base pre-trained on {config['source_subjects']} scanner-{config['source_scanner']} subjects")
    targets = config.get("target_scanners") or [config["target_scanner"]]  # older results: one target
    return ("UNETR" if config["backbone"] == "unetr" else "CvT-GAN") + (
        f" ({config['preset']} preset), scanner {config['source_scanner']} -> "
        f"scanner{'s' if len(targets) > 1 else ''} {', '.join(map(str, targets))} "
        f"({config['simulate_mode']}-mode simulation), {base}; {config['target_train']} fine-tuning subjects, "
        f"{epochs} epochs; {config['target_test']} held-out test subjects")


def results_table(root: Path, relative: str = FULL_BENCHMARK) -> str:
    """The README's results table: per method, trained parameters, head PSNR and SSIM (mean ±
    sd over the held-out subjects), fine-tuning wall time, CPU time and peak memory."""
    result = load_json(root, relative)
    lines = [f"`{relative}`: {_setting(result)}. PSNR and SSIM against the long scan inside the head "
             "(mean ± sd); wall time, CPU time (all threads; unlike wall time, not inflated by a pause "
             "or a busy machine; - where not recorded) and peak memory of the fine-tuning run "
             f"on {result['machine']['device']}.", "",
             "| method | trained parameters | PSNR (dB) | SSIM | fine-tuning (s) | CPU (s) | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["methods"].items():
        sd = row.get("sd", {})
        percent = "-" if row.get("percent") is None else f"{row['percent']:.3g} %"
        seconds = "-" if row.get("seconds") is None else f"{row['seconds']:.0f}"
        cpu = "-" if row.get("cpu_seconds") is None else f"{row['cpu_seconds']:.0f}"
        memory = "-" if row.get("peak_mem_mb") is None else f"{row['peak_mem_mb']:.0f}"
        lines.append(f"| {METHOD_NAMES.get(name, name)} | {percent} | {row['psnr']:.2f} ± {sd.get('psnr', 0):.2f} | "
                     f"{row['ssim']:.3f} ± {sd.get('ssim', 0):.3f} | {seconds} | {cpu} | {memory} |")
    return "\n".join(lines) + "\n"


def summary(root: Path, relative: str) -> str:
    """One paragraph: the held-out head PSNR of every method and how the base did on its source."""
    result = load_json(root, relative)
    methods = result["methods"]
    scores = ", ".join(f"{METHOD_NAMES.get(name, name)} {row['psnr']:.2f}" for name, row in methods.items())
    source = result.get("source_validation") or {}
    text = (f"`{relative}` ({_setting(result)}): held-out PSNR inside the head, in dB: {scores}.")
    if source:
        text += (f" On its source scanner the base scores {source['base']['psnr']:.2f} dB against its input's "
                 f"{source['input']['psnr']:.2f} dB.")
    return text + "\n"


def _time_ratio_text(checks: dict) -> str:
    """PETITE's fine-tuning time over Full-FT's as the time target judges it: CPU time where both runs
    recorded it (then with the wall-time ratio beside it), else wall time."""
    cpu, wall = checks.get("petite_over_full_cpu_time"), checks["petite_over_full_wall_time"]
    if cpu is None:
        return f"wall time {wall:.2f}x"
    return f"CPU time {cpu:.2f}x (wall time {wall:.2f}x)"


def targets(root: Path, relative: str) -> str:
    """The benchmark's targets as a list: what was measured, the target, met or not."""
    from ..engine.bench import TARGET_GAIN_OVER_INPUT_DB, TARGET_MEMORY_RATIO, TARGET_RECOVERY, TARGET_TIME_RATIO

    checks = load_json(root, relative)["targets"]

    def verdict(key: str) -> str:
        return "met" if checks[key] else "**not met**"

    below = checks["peft_methods_below_no_ft"]
    lines = [f"- PETITE beats the short scan by {checks['petite_minus_input_psnr_db']:.2f} dB "
             f"(target {TARGET_GAIN_OVER_INPUT_DB:g} dB: {verdict('petite_minus_input_psnr_db_ok')}) and in SSIM "
             f"({verdict('petite_ssim_above_input_ok')}).",
             f"- The base beats its input on the source scanner by {checks['source_base_minus_input_psnr_db']:.2f} dB "
             f"({verdict('source_base_beats_input_ok')}).",
             "- Every PEFT method scores above No-FT (" + (verdict("every_peft_beats_no_ft_ok") if not below else
                                                          "**not met**: " + ", ".join(below)) + ").",
             f"- PETITE recovers {100 * checks['petite_recovery_of_full_gain']:.0f} % of Full-FT's gain over No-FT "
             f"(target {100 * TARGET_RECOVERY:.0f} %: {verdict('petite_recovery_ok')}).",
             f"- PETITE's fine-tuning peak memory is {checks['petite_over_full_peak_mem']:.2f}x Full-FT's (target "
             f"{TARGET_MEMORY_RATIO:g}x: {verdict('petite_memory_ok')}), its {_time_ratio_text(checks)} "
             f"(target {TARGET_TIME_RATIO:g}x: {verdict('petite_time_ok')})."]
    if "petite_not_significantly_below_full_ok" in checks:
        lines.append("- PETITE is not significantly below Full-FT (paired Wilcoxon, p < 0.05): "
                     f"{verdict('petite_not_significantly_below_full_ok')}.")
    if "every_peft_significantly_above_no_ft_ok" in checks:
        short = checks["peft_methods_not_significantly_above_no_ft"]
        lines.append("- Every PEFT method beats No-FT by a margin whose 95 % CI excludes zero: " +
                     ("met" if not short else "**not met**: " + ", ".join(short)) + ".")
    if "every_model_beats_input_ok" in checks:
        short = checks["models_not_above_input"]
        lines.append("- Every model beats the short scan in head PSNR and SSIM, against the long scan and against "
                     "the noise-free truth: " + ("met" if not short else "**not met**: " + ", ".join(short)) + ".")
    return "\n".join(lines) + "\n"


def bench_plans(root: Path) -> str:
    """The data sizes and epochs of ``petite bench``'s plans, from the code (:func:`make_plan`)."""
    from ..engine.bench import make_plan
    from ..hyperparameters import FINETUNING, PRETRAINING

    lines = ["| plan | simulation | source subjects (validation) | target: fine-tune + validation + test | "
             "pre-training epochs | fine-tuning epochs (budget) | learning rates (x Table 3) | early stopping | "
             "other targets fine-tune |", "|---|---|---|---|---|---|---|---|---|"]
    for title, preset, quick in (("`--quick` (cpu preset)", "cpu", True), ("full, cpu preset", "cpu", False),
                                 ("full, paper preset", "paper", False)):
        plan = make_plan("unetr", preset, quick=quick)

        def epochs(overrides: dict, table: dict) -> str:
            values = {name: overrides.get("epochs", table[(preset, backbone)]["epochs"])
                      for backbone, name in (("unetr", "UNETR"), ("cvtgan", "CvT-GAN"))}
            if len(set(values.values())) == 1:
                return str(next(iter(values.values())))
            return " / ".join(f"{value} ({name})" for name, value in values.items())

        pretrain, finetune = epochs(plan.pretrain, PRETRAINING), epochs(plan.finetune, FINETUNING)
        patience = plan.finetune.get("patience")
        stopping = f"after {patience} validations without a better one" if patience else "none"
        others = "every method" if plan.secondary_methods is None else ", ".join(plan.secondary_methods)
        lines.append(f"| {title} | {plan.simulate_mode} | {plan.source_subjects} ({plan.source_val}) | "
                     f"{plan.target_train} + {plan.target_val} + {plan.target_test} | {pretrain} | {finetune} | "
                     f"{', '.join(f'{factor:g}' for factor in plan.lr_factors)} | {stopping} | {others} |")
    return "\n".join(lines) + "\n"


def wall_time(root: Path, relative: str) -> str:
    """The wall time and machine a committed result records."""
    result = load_json(root, relative)
    machine = result["machine"]
    return (f"`{relative}`: {result['wall_seconds'] / 60:.1f} min on {machine['device']} "
            f"({machine['cpu_count']} cores, torch {machine['torch']}).\n")


def regional_table(root: Path, relative: str = FULL_BENCHMARK) -> str:
    """The README's regional table: per method, the mean |bias| of regional mean uptake and of
    SUVR against the long scan (%), and the grey/white contrast as a fraction of the long scan's,
    with the regional targets (PETITE's |SUVR bias| and contrast)."""
    from ..regional import CONTRAST_TARGET, SUVR_BIAS_TARGET_PCT

    result = load_json(root, relative)
    rows = [(name, row) for name, row in result["methods"].items() if row.get("regional_abs_bias_pct") is not None]
    if not rows:
        return f"`{relative}` was measured before the regional report existed: no regional figures yet.\n"

    def number(value, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"`{relative}`: regional uptake of the held-out subjects against the long scan (the simulator's "
             f"region labels; SUVR against the cerebellum). Targets: PETITE's mean |SUVR bias| at most "
             f"{SUVR_BIAS_TARGET_PCT:g} % and below the short scan's; its grey/white contrast within "
             f"{CONTRAST_TARGET:.0%} of the long scan's.", "",
             "| method | mean \\|regional bias\\| (%) | mean \\|SUVR bias\\| (%) | grey/white contrast / long scan's |",
             "|---|---|---|---|"]
    for name, row in rows:
        lines.append(f"| {METHOD_NAMES.get(name, name)} | {number(row.get('regional_abs_bias_pct'), 2)} | "
                     f"{number(row.get('suvr_abs_bias_pct'), 2)} | {number(row.get('gw_contrast_vs_long'), 4)} |")
    checks = result.get("targets", {})
    if "petite_suvr_bias_ok" in checks or "petite_gw_contrast_ok" in checks:
        verdicts = []
        if "petite_suvr_bias_ok" in checks:
            verdicts.append(f"SUVR bias {'met' if checks['petite_suvr_bias_ok'] else 'not met'}")
        if "petite_gw_contrast_ok" in checks:
            verdicts.append(f"contrast {'met' if checks['petite_gw_contrast_ok'] else 'not met'}")
        lines += ["", "PETITE's regional targets: " + ", ".join(verdicts) + "."]
    return "\n".join(lines) + "\n"


def _difference(value) -> str:
    """A paired difference as ``+0.12 [-0.05, +0.30], p 0.04`` (bold when significant)."""
    if not value:
        return "-"
    text = (f"{value['mean']:+.3f} [{value['ci95'][0]:+.3f}, {value['ci95'][1]:+.3f}], "
            f"p {value['wilcoxon_p']:.2g}")
    return f"**{text}**" if value["significant"] else text


def _recovery(methods: dict) -> tuple:
    """(Full-FT's head-PSNR gain over No-FT in dB, the share of it PETITE recovers or None when
    Full-FT gains nothing) of one target's rows."""
    gain = methods["full"]["psnr"] - methods["no-ft"]["psnr"]
    return gain, (methods["petite"]["psnr"] - methods["no-ft"]["psnr"]) / gain if gain > 0 else None


def recovery_table(root: Path, relative: str) -> str:
    """Per target scanner of a benchmark: held-out head PSNR of the input, No-FT, Full-FT and
    PETITE, Full-FT's gain over No-FT, the share of it PETITE recovers, and PETITE's paired
    differences from Full-FT and No-FT (mean, 95 % CI, Wilcoxon p; bold when p < 0.05)."""
    result = load_json(root, relative)
    by_target = result.get("by_target") or {str(result["config"]["main_target"]): result}
    lines = [f"`{relative}`: head PSNR (dB) on each target's held-out subjects; paired differences in dB "
             "(95 % CI, Wilcoxon signed-rank p; **bold**: p < 0.05).", "",
             "| target | input | No-FT | Full-FT | PETITE | Full-FT gain | PETITE recovers | PETITE - Full-FT | "
             "PETITE - No-FT | n |", "|---|---|---|---|---|---|---|---|---|---|"]
    for scanner, entry in by_target.items():
        methods, statistics = entry["methods"], entry.get("statistics", {})
        if not all(name in methods for name in ("input", "no-ft", "full", "petite")):
            continue
        gain, recovered = _recovery(methods)
        lines.append(f"| {scanner} | " + " | ".join(f"{methods[n]['psnr']:.2f}" for n in ("input", "no-ft", "full", "petite"))
                     + f" | {gain:+.2f} | {'-' if recovered is None else f'{100 * recovered:.0f} %'} | "
                     f"{_difference(statistics.get('petite_vs_full'))} | {_difference(statistics.get('petite_vs_no-ft'))} | "
                     f"{len(entry.get('test_subjects', []))} |")
    return "\n".join(lines) + "\n"


def sweep_table(root: Path, relative: str) -> str:
    """The learning-rate sweep of a benchmark's main target: per method the rates tried (factors
    of its Table-3 rate), each run's best validation PSNR, and the rate kept."""
    from ..engine.bench import sweep_lines

    result = load_json(root, relative)
    lines = sweep_lines(result["methods"])
    if not lines:
        return f"`{relative}` was made without a learning-rate sweep (Table 3's rates only).\n"
    return f"`{relative}`, target scanner {result['config']['main_target']}, validation subjects only:\n\n" + \
        "\n".join(lines) + "\n"


def significance_table(root: Path, relative: str) -> str:
    """Every fine-tuned method of a benchmark's main target against No-FT: the paired head-PSNR
    difference (mean, 95 % CI, Wilcoxon p; bold when p < 0.05)."""
    result = load_json(root, relative)
    statistics = result.get("statistics", {})
    lines = [f"`{relative}`, target scanner {result['config']['main_target']}: each method minus No-FT, head "
             "PSNR in dB on the held-out subjects (95 % CI, Wilcoxon p; **bold**: p < 0.05).", "",
             "| method | kept learning rate | minus No-FT |", "|---|---|---|"]
    for name, row in result["methods"].items():
        if name in ("input", "no-ft"):
            continue
        lr = "-" if row.get("lr") is None else f"{row['lr']:g}"
        lines.append(f"| {METHOD_NAMES.get(name, name)} | {lr} | {_difference(statistics.get(f'{name}_vs_no-ft'))} |")
    return "\n".join(lines) + "\n"


def recovery_summary(root: Path, relatives=(FULL_BENCHMARK, CVTGAN_BENCHMARK)) -> str:
    """One row per backbone and target scanner of the committed full benchmarks: No-FT,
    Full-FT and PETITE head PSNR, and the share of Full-FT's gain PETITE recovers (each row
    from one result file, named in its first cell)."""
    lines = ["| result | target | No-FT (dB) | Full-FT (dB) | PETITE (dB) | PETITE recovers | "
             "PETITE - Full-FT (dB, paired) |", "|---|---|---|---|---|---|---|"]
    for relative in relatives:
        result = load_json(root, relative)
        for scanner, entry in (result.get("by_target") or {}).items():
            methods, deficit = entry["methods"], entry.get("statistics", {}).get("petite_vs_full")
            recovered = _recovery(methods)[1]
            share = "-" if recovered is None else f"{100 * recovered:.0f} %"
            significant = "-" if not deficit else \
                f"{deficit['mean']:+.2f} ({'p < 0.05' if deficit['significant'] else 'not significant'})"
            lines.append(f"| `{Path(relative).name}` | {scanner} | {methods['no-ft']['psnr']:.2f} | "
                         f"{methods['full']['psnr']:.2f} | {methods['petite']['psnr']:.2f} | {share} | {significant} |")
    return "\n".join(lines) + "\n"


UNETR_LEDGER = "docs/benchmarks/unetr-cpu.ledger.json"
CVTGAN_LEDGER = "docs/benchmarks/cvtgan-cpu.ledger.json"


def _planned_runs(config: dict) -> dict:
    """{target scanner: [(method, learning-rate factor or None), ...]} a ledger's plan fine-tunes:
    every method at every factor on the main (first) target, the secondary methods once on the others."""
    targets = [str(t) for t in config["target_scanners"]]
    secondary = [m for m in config["methods"] if m in (config.get("secondary_methods") or config["methods"])]
    planned = {targets[0]: [(m, f) for m in config["methods"] for f in config["lr_factors"]]}
    planned.update({t: [(m, None) for m in secondary] for t in targets[1:]})
    return planned


def ledger_progress(root: Path, relative: str = UNETR_LEDGER) -> str:
    """How far a benchmark in progress has come, from its committed ledger: the runs finished per
    target with their best validation PSNR, the sessions and their wall time. No held-out score is
    shown: those of the runs the sweep will not keep are never reported. A ledger not committed
    yet reads as a benchmark not started."""
    if not (Path(root) / relative).exists():
        return f"`{relative}`: not started yet (no run finished).\n"
    ledger = load_json(root, relative)
    planned = _planned_runs(ledger["config"])
    sessions = ledger["sessions"]
    done = sum(len(ledger["targets"].get(t, {}).get("runs", [])) for t in planned)
    idle = sum(1 for s in sessions if s.get("runs") == 0)
    lines = [f"`{relative}`: {done} of {sum(len(v) for v in planned.values())} fine-tuning runs finished, in "
             f"{len(sessions) - idle} session(s) that fine-tuned"
             + (f" and {idle} that only scored or assembled" if idle else "")
             + f" ({sum(s['wall_seconds'] for s in sessions) / 60:.0f} min on "
             f"{', '.join(sorted({s['machine']['device'] for s in sessions}))}).", ""]
    for target, runs in planned.items():
        finished = ledger["targets"].get(target, {}).get("runs", [])
        text = []
        for run in finished:
            curve = [e["val_psnr"] for e in run["training"].get("history", []) if "val_psnr" in e]
            best = f"{max(curve):.3f} dB" if curve else "-"
            text.append(f"{run['method']} at {run['lr']:g} (best validation PSNR {best}, epoch "
                        f"{run['training'].get('best_epoch')} of {run['training'].get('epochs')})")
        lines.append(f"- scanner {target}: {len(finished)} of {len(runs)} runs"
                     + (": " + "; ".join(text) if text else ""))
    return "\n".join(lines) + "\n"
