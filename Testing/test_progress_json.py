"""``--progress-json``: one JSON object per progress event and line on stderr, read back by the
Slicer module (PETITELib.progress.event_from_json)."""
import io
import json
import math

from PETITELib import cli
from PETITELib.progress import JsonLinesProgress, ProgressEvent, event_from_json


def test_events_round_trip_through_one_line_of_json_each():
    stream = io.StringIO()
    progress = JsonLinesProgress(stream)
    progress(ProgressEvent("finetune", 3, 12, "epoch 1/4", {"loss": 0.25, "val_psnr": math.nan}))
    progress(ProgressEvent("reconstruct", 0, 0))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {"stage": "finetune", "step": 3, "total": 12, "fraction": 0.25, "message": "epoch 1/4",
                     "metrics": {"loss": 0.25, "val_psnr": None}}
    event = event_from_json(lines[0])
    assert (event.stage, event.step, event.total, event.message) == ("finetune", 3, 12, "epoch 1/4")
    assert event.metrics == {"loss": 0.25, "val_psnr": None}
    assert event_from_json(lines[1]).fraction == 0.0
    for other in ("petite: error: x", "{not json", '{"torch": "2.13"}', ""):
        assert event_from_json(other) is None


def test_every_command_takes_progress_json():
    parser = cli.build_parser()
    commands = list(cli._command_parsers(parser))
    assert len(commands) >= 10
    for command in commands:
        assert any("--progress-json" in action.option_strings for action in command._actions), command.prog


def test_a_command_reports_json_lines_on_stderr_and_keeps_stdout(tmp_path, capsys):
    code = cli.main(["simulate", "--out", str(tmp_path / "sim"), "--scanners", "4", "--subjects", "1",
                     "--mode", "fast", "--progress-json"])
    assert code == 0
    captured = capsys.readouterr()
    events = [event_from_json(line) for line in captured.err.splitlines()]
    assert events and all(event is not None for event in events)
    assert events[-1].fraction == 1.0
    assert "{" not in captured.out and str(tmp_path / "sim") in captured.out
