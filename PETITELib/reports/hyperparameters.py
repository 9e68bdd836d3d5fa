"""Generated text from the one hyperparameter table, :mod:`PETITELib.hyperparameters`."""
from __future__ import annotations

from pathlib import Path

from ..hyperparameters import (BATCH_SIZE, CROPS_PER_SUBJECT, DEVIATIONS, FINETUNING, METHOD_ARGUMENTS,
                               MODEL_PRESET_SPECS, OPTIMIZER, PRESET_METHOD_ARGUMENTS, PRESETS, PRETRAINING, TABLE3)

BACKBONES = (("unetr", "UNETR"), ("cvtgan", "CvT-GAN"))
COLUMN_NAMES = {"full": "Full-FT", "layernorm": "LayerNorm", "bitfit": "BitFit", "lora": "LoRA",
                "adapter": "Adapters", "vpt": "VPT", "ssf": "SSF", "petite": "PETITE and every mix"}


def _number(value: float) -> str:
    """1e-3 rather than 0.001 (the paper's way of writing rates)."""
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _percent(value: float) -> str:
    return f"{100 * value:g} %"


def _arguments(arguments) -> str:
    if arguments is None:
        return "-"
    if not arguments:
        return "(none)"
    return ", ".join(f"{key} {'/'.join(map(str, value)) if isinstance(value, tuple) else value}"
                     for key, value in arguments.items())


def _schedule(column) -> str:
    return f"{_percent(column.warmup_fraction)} warm-up + cosine" if column.warmup_fraction else "cosine"


def _optimizer(column) -> str:
    return OPTIMIZER if column.paper_optimizer == OPTIMIZER else f"{OPTIMIZER} (paper: {column.paper_optimizer})"


def hyperparameter_tables(root: Path) -> str:
    """Fine-tuning per method (Table 3), method arguments (Tables 1, 6, 7), the ``petite``
    preset, the training settings per job and preset, and the deviations from the paper."""
    lines = ["**Fine-tuning per method** (the paper's supplementary Table 3). A spec of one method gets "
             "its column, `full` the Full-FT column, any mix the PETITE column. Learning rate / weight decay, "
             "schedule, optimizer:", "",
             "| column | " + " | ".join(f"{title} lr / wd | {title} schedule, optimizer" for _, title in BACKBONES)
             + " |", "|---" * (1 + 2 * len(BACKBONES)) + "|"]
    for column in TABLE3[BACKBONES[0][0]]:
        cells = []
        for backbone, _ in BACKBONES:
            entry = TABLE3[backbone][column]
            cells += [f"{_number(entry.learning_rate)} / {_number(entry.weight_decay)}", f"{_schedule(entry)}, {_optimizer(entry)}"]
        lines.append(f"| {COLUMN_NAMES[column]} | " + " | ".join(cells) + " |")
    lines += ["", "**Method arguments** a spec term starts from (Table 1; per part, Tables 6/7); "
                  "`-`: nothing to act on in that part:", "",
              "| method | " + " | ".join(f"{title} encoder | {title} decoder" for _, title in BACKBONES) + " |",
              "|---" * (1 + 2 * len(BACKBONES)) + "|"]
    for method in METHOD_ARGUMENTS[BACKBONES[0][0]]:
        cells = [_arguments(METHOD_ARGUMENTS[backbone][method][part])
                 for backbone, _ in BACKBONES for part in ("encoder", "decoder")]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    lines += [""] + [f"In the `{preset}` model preset, {dict(BACKBONES)[backbone]}'s `{method}` starts from "
                     + ", ".join(f"{_arguments(arguments)} ({part})" for part, arguments in parts.items())
                     + " instead (see the deviations below)."
                     for preset, backbones in PRESET_METHOD_ARGUMENTS.items()
                     for backbone, methods in backbones.items() for method, parts in methods.items()]
    lines += ["", "**Presets**: " + "; ".join(f"`{name}` = `{specs[backbone]}` ({title})"
                                              for name, specs in PRESETS.items() for backbone, title in BACKBONES) + "."
              + "".join(f" In the `{preset}` model preset, {title}'s `{name}` is `{specs[backbone]}` (see the deviations below)."
                        for preset, names in MODEL_PRESET_SPECS.items() for name, specs in names.items()
                        for backbone, title in BACKBONES if backbone in specs),
              "", f"**Training settings** per job and preset (batch {BATCH_SIZE}, {CROPS_PER_SUBJECT} random "
                  f"64^3 crops per training subject per epoch, {OPTIMIZER} with a cosine schedule per step, "
                  "throughout; fine-tuning takes learning rate, weight decay and warm-up from the method's column):",
              "", "| job | preset | backbone | epochs | lr | weight decay | warm-up | validation subjects | "
                  "validate every |", "|---|---|---|---|---|---|---|---|---|"]
    for job, table in (("pretrain", PRETRAINING), ("finetune", FINETUNING)):
        for (preset, backbone), values in table.items():
            method = "method" if job == "finetune" else None
            lr = _number(values["lr"]) if "lr" in values else method
            wd = _number(values["weight_decay"]) if "weight_decay" in values else method
            warmup = _percent(values["warmup_fraction"]) if "warmup_fraction" in values else method
            every = "epoch" if values["val_every"] == 1 else f"{values['val_every']} epochs"
            lines.append(f"| `{job}` | `{preset}` | {dict(BACKBONES)[backbone]} | {values['epochs']} | {lr} | {wd} | "
                         f"{warmup} | {values['val_subjects']} | {every} |")
    lines += ["", "**Where PETITE departs from the paper or fills in what it leaves open:**", ""]
    lines += [f"- **{d.setting}**: paper {d.paper}; PETITE {d.petite}. Why: {d.why}." for d in DEVIATIONS]
    return "\n".join(lines) + "\n"
