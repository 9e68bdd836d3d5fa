"""Generated text from committed ``petite bench`` results (docs/benchmarks/*.json).

Each function takes the repository root and the result file (relative to it) and returns Markdown:
the results table the README quotes, a one-paragraph summary of the held-out scores, and the
benchmark's targets with what was measured.
"""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

FULL_BENCHMARK = "docs/benchmarks/unetr-cpu.json"
QUICK_BENCHMARK = "docs/benchmarks/quick-unetr-cpu.json"
QUICK_SMOKE_BENCHMARK = "docs/benchmarks/quick-unetr-cpu-smoke.json"

# How a method is named in prose and tables.
METHOD_NAMES = {"input": "short scan (input)", "no-ft": "No-FT (base alone)", "full": "Full-FT", "layernorm": "LayerNorm",
                "bitfit": "BitFit", "lora": "LoRA", "adapter": "Adapters", "ssf": "SSF", "vpt": "VPT", "gvpt": "gated VPT",
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
    sd over the held-out subjects), fine-tuning wall time and peak memory."""
    result = load_json(root, relative)
    lines = [f"`{relative}`: {_setting(result)}. PSNR and SSIM against the long scan inside the head "
             "(mean ± sd); wall time and peak memory of the fine-tuning run "
             f"on {result['machine']['device']}.", "",
             "| method | trained parameters | PSNR (dB) | SSIM | fine-tuning (s) | peak memory (MiB) |",
             "|---|---|---|---|---|---|"]
    for name, row in result["methods"].items():
        sd = row.get("sd", {})
        percent = "-" if row.get("percent") is None else f"{row['percent']:.3g} %"
        seconds = "-" if row.get("seconds") is None else f"{row['seconds']:.0f}"
        memory = "-" if row.get("peak_mem_mb") is None else f"{row['peak_mem_mb']:.0f}"
        lines.append(f"| {METHOD_NAMES.get(name, name)} | {percent} | {row['psnr']:.2f} ± {sd.get('psnr', 0):.2f} | "
                     f"{row['ssim']:.3f} ± {sd.get('ssim', 0):.3f} | {seconds} | {memory} |")
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
             f"{TARGET_MEMORY_RATIO:g}x: {verdict('petite_memory_ok')}), its wall time "
             f"{checks['petite_over_full_wall_time']:.2f}x (target {TARGET_TIME_RATIO:g}x: {verdict('petite_time_ok')})."]
    return "\n".join(lines) + "\n"


def bench_plans(root: Path) -> str:
    """The data sizes and epochs of ``petite bench``'s plans, from the code (:func:`make_plan`)."""
    from ..engine.bench import make_plan
    from ..hyperparameters import FINETUNING, PRETRAINING

    lines = ["| plan | simulation | source subjects (validation) | target: fine-tune + validation + test | "
             "pre-training epochs | fine-tuning epochs |", "|---|---|---|---|---|---|"]
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
        lines.append(f"| {title} | {plan.simulate_mode} | {plan.source_subjects} ({plan.source_val}) | "
                     f"{plan.target_train} + {plan.target_val} + {plan.target_test} | {pretrain} | {finetune} |")
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
