"""``petite methods``: every method, the petite preset, full and the paper's mixes, with counts."""
import json

import pytest

from PETITELib.cli import main
from PETITELib.peft import METHODS

SINGLE_AND_PRESET = list(METHODS) + ["petite"]


def _run(capsys, *argv):
    code = main(["methods", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("backbone", ["unetr", "cvtgan"])
def test_paper_preset_json_lists_every_method_below_one_percent(capsys, backbone):
    code, out, _ = _run(capsys, "--backbone", backbone, "--preset", "paper", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    for name in SINGLE_AND_PRESET:
        row = rows[name]
        assert {"name", "spec", "trainable", "total", "percent"} <= set(row)
        assert 0 < row["percent"] < 1, (name, row["percent"])
        assert row["percent"] == pytest.approx(100 * row["trainable"] / row["total"], abs=1e-4)
    assert rows["full"]["percent"] == 100 and rows["full"]["trainable"] == rows["full"]["total"]
    mixes = [row for row in rows.values() if row["kind"] == "mix"]
    assert len(mixes) == {"unetr": 9, "cvtgan": 12}[backbone]
    assert all(row["spec"].endswith("+bitfit") for row in mixes)
    assert rows["petite"]["spec"] == {"unetr": "enc=lora(alpha=4,r=4)+dec=ssf+bitfit",
                                      "cvtgan": "enc=vpt(tokens=0/8/32)+dec=lora(alpha=8,r=8)+bitfit"}[backbone]


def test_cpu_preset_petite_trains_under_one_percent_on_both_backbones(capsys):
    for backbone in ("unetr", "cvtgan"):
        code, out, _ = _run(capsys, "--backbone", backbone, "--preset", "cpu", "--json")
        petite = {row["name"]: row for row in json.loads(out)}["petite"]
        assert code == 0 and 0 < petite["percent"] < 1, (backbone, petite)


def test_table_output_and_custom_spec(capsys):
    code, out, _ = _run(capsys, "--backbone", "cvtgan", "--preset", "cpu")
    assert code == 0 and "petite" in out and "mix:vpt/lora" in out and "base parameters" in out
    code, out, _ = _run(capsys, "--backbone", "cvtgan", "--preset", "cpu", "--spec", "enc=ssf+dec=lora(r=2)", "--json")
    (row,) = json.loads(out)
    assert code == 0 and row["name"] == "custom" and row["spec"] == "enc=ssf+dec=lora(alpha=2,r=2)"


@pytest.mark.parametrize("spec,message", [("dora", "unknown PEFT method"), ("lora(r=0)", "rank r"),
                                          ("dec=vpt", "decoder has no layers vpt")])
def test_bad_spec_is_one_line_on_stderr_with_exit_2(capsys, spec, message):
    code, out, err = _run(capsys, "--backbone", "unetr", "--preset", "cpu", "--spec", spec)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err

