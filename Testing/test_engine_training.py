"""Pre-training, fine-tuning, resume, cancel and seeds with the real backbones on tiny cohorts.

CvT-GAN at the cpu preset on 3-subject phantom cohorts, 2 crops of 64^3 per subject, batch 2:
each training run takes a few seconds.
"""
import json

import pytest
import torch
from phantom_head import write_plain_cohort
from safetensors.torch import load_file

from PETITELib import api
from PETITELib.engine.checkpoint import checkpoint_folder
from PETITELib.errors import Cancelled, PetiteError
from PETITELib.peft import read_adapter
from PETITELib.progress import CancelToken

TINY = dict(epochs=2, batch_size=2, crops_per_subject=2, val_subjects=1, val_every=1)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohorts")
    return (write_plain_cohort(root / "source", 3, shape=(64, 64, 44)),
            write_plain_cohort(root / "target", 3, shape=(70, 66, 40)))


@pytest.fixture(scope="module")
def base(cohorts, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "base.safetensors"
    return api.pretrain(cohorts[0], backbone="cvtgan", preset="cpu", out=out, seed=0, device="cpu", **TINY)


@pytest.fixture(scope="module")
def adapter(cohorts, base, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter") / "petite.safetensors"
    return api.finetune(cohorts[1], base=base, peft="petite", out=out, seed=3, device="cpu", **TINY)


def test_adapter_metadata_records_the_run(adapter):
    training = read_adapter(adapter).metadata.training
    assert training["spec"] == read_adapter(adapter).metadata.spec
    assert training["epochs"] == 2 and training["best_epoch"] in (1, 2) and training["complete"]
    assert training["val_metrics"]["psnr"] > 0 and "psnr_whole" in training["val_metrics"]
    assert training["wall_seconds"] > 0 and training["peak_mem_mb"] >= 0
    assert training["device"].startswith("cpu") and 0 < training["percent"] < 5
    assert not checkpoint_folder(adapter).exists()


def test_adapter_records_the_voxel_grid_it_was_trained_on(adapter):
    scanner = read_adapter(adapter).metadata.scanner
    assert scanner["matrix"] == [70, 66, 40]
    assert len(scanner["spacing"]) == 3 and all(v > 0 for v in scanner["spacing"])


def test_same_seed_gives_the_same_adapter(cohorts, base, adapter, tmp_path):
    again = api.finetune(cohorts[1], base=base, peft="petite", out=tmp_path / "again.safetensors", seed=3,
                         device="cpu", **TINY)
    first, second = load_file(str(adapter)), load_file(str(again))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_cancel_keeps_the_best_output_and_resume_matches_an_uninterrupted_run(cohorts, base, adapter, tmp_path):
    out = tmp_path / "resumed.safetensors"
    token = CancelToken()

    def cancel_in_second_epoch(event):
        if event.stage == "finetune" and event.step == 3:  # first batch of epoch 2 done
            token.cancel()

    with pytest.raises(Cancelled):
        api.finetune(cohorts[1], base=base, peft="petite", out=out, seed=3, device="cpu",
                     progress=cancel_in_second_epoch, cancel=token, **TINY)
    kept = read_adapter(out).metadata.training  # the best output so far is on disk
    assert kept["best_epoch"] == 1 and not kept["complete"]
    state = json.loads((checkpoint_folder(out) / "state.json").read_text())
    assert state["epoch"] == 1
    with pytest.raises(PetiteError, match="already exists"):
        api.finetune(cohorts[1], base=base, peft="petite", out=out, seed=3, device="cpu", **TINY)

    api.finetune(cohorts[1], base=base, peft="petite", out=out, seed=3, device="cpu", resume=True, **TINY)
    resumed, straight = load_file(str(out)), load_file(str(adapter))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert read_adapter(out).metadata.training["resumed_from_epoch"] == 1


def test_full_fine_tuning_writes_a_full_model_that_evaluate_scores(cohorts, base, adapter, tmp_path):
    full = api.finetune(cohorts[1], base=base, peft="full", out=tmp_path / "full.safetensors", seed=0,
                        device="cpu", **dict(TINY, epochs=1))
    result = api.evaluate(cohorts[1], base=base, adapters=[adapter, full], device="cpu", subjects=["sub-000"])
    assert list(result["methods"]) == ["input", "no-ft", "petite", "full"]
    assert result["methods"]["full"]["spec"] == "full"
    for entry in result["methods"].values():
        assert set(entry["per_subject"]) == {"sub-000"} and entry["mean"]["psnr"] > 0


def test_unetr_pretrains_from_the_identity(cohorts, tmp_path):
    base = api.pretrain(cohorts[0], backbone="unetr", preset="cpu", out=tmp_path / "unetr.safetensors",
                        device="cpu", **dict(TINY, epochs=1, crops_per_subject=1))
    from PETITELib.peft import load_base_model

    training = load_base_model(base).metadata["training"]
    # one step from the identity stays close to the input (no random residual noise)
    assert abs(training["val_metrics"]["psnr"] - training["val_input_metrics"]["psnr"]) < 3.0


def test_bad_settings_are_refused_before_any_work(cohorts, base, tmp_path):
    with pytest.raises(PetiteError, match="--batch-size"):
        api.finetune(cohorts[1], base=base, out=tmp_path / "x.safetensors", batch_size=0)
    with pytest.raises(PetiteError, match="no checkpoint"):
        api.finetune(cohorts[1], base=base, out=tmp_path / "x.safetensors", resume=True)
    assert not (tmp_path / "x.safetensors").exists()


def test_evaluate_command_writes_json_and_markdown(cohorts, base, adapter, tmp_path, capsys):
    from PETITELib.cli import main

    out = tmp_path / "scores.json"
    assert main(["evaluate", "--base", str(base), "--adapter", str(adapter), "--cohort", str(cohorts[1]),
                 "--subjects", "sub-001", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| input |" in table and "| no-ft |" in table and "| petite |" in table
    result = json.loads(out.read_text())
    assert result["subjects"] == ["sub-001"] and result["methods"]["petite"]["percent"] > 0
    assert out.with_suffix(".md").read_text() == table
