"""The training loop on a toy model: exact resume, cancel keeps the best output, checkpoint safety."""
import json
import random
import time

import numpy as np
import pytest
import torch
from torch import nn

from PETITELib.engine import checkpoint as ckpt
from PETITELib.engine.objectives import L1Objective, adamw
from PETITELib.engine.schedule import CosineSchedule
from PETITELib.engine.training import FitPlan, fit
from PETITELib.errors import Cancelled, PetiteError
from PETITELib.progress import CancelToken

STEPS = 3


def _run(folder, epochs=4, resume=False, cancel_at=None, job=None, wait_in_epoch=None):
    """Train a tiny conv net on random data; cancel_at=(epoch, batch) cancels mid-epoch;
    wait_in_epoch: the epoch whose batches start after 1 s of waiting (no work)."""
    torch.manual_seed(0)
    np.random.seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 1, 3, padding=1))
    objective = L1Objective(model, adamw(model, 1e-2, 1e-5), CosineSchedule(1e-2, epochs * STEPS, 1))
    token = CancelToken()
    written = []

    def batches(epoch):
        if epoch == wait_in_epoch:
            time.sleep(1.0)
        for index in range(STEPS):
            if cancel_at == (epoch, index):
                token.cancel()
            x = torch.rand(2, 1, 8, 8, 8) + float(np.random.rand())  # global RNGs: must be restored
            yield x, 2 * x

    def validate():
        x = torch.rand(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return {"psnr": float(-10 * torch.log10(((model(x) - 2 * x) ** 2).mean()))}

    plan = FitPlan(epochs=epochs, steps_per_epoch=STEPS, batches_for_epoch=batches, validate=validate,
                   on_best=lambda epoch, metrics: written.append(epoch), set_mode=model.train,
                   checkpoint_dir=folder / "run.ckpt", job=job or {"spec": "toy"}, device=torch.device("cpu"))
    try:
        result = fit(objective, plan, resume=resume, cancel=token)
    except Cancelled:
        result = None
    return result, model, written


def test_resume_after_an_interrupted_epoch_gives_the_same_weights(tmp_path):
    straight, straight_model, _ = _run(tmp_path / "a")
    cancelled, _, written = _run(tmp_path / "b", cancel_at=(3, 1))
    assert cancelled is None and written and max(written) <= 2
    state = json.loads((tmp_path / "b" / "run.ckpt" / "state.json").read_text())
    assert state["epoch"] == 2  # the interrupted epoch 3 is the only work lost
    resumed, resumed_model, _ = _run(tmp_path / "b", resume=True)
    assert resumed.resumed_from_epoch == 2
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed.best_epoch == straight.best_epoch
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert not (tmp_path / "b" / "run.ckpt").exists()  # removed after a completed run


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    _run(tmp_path, cancel_at=(2, 0))
    with pytest.raises(PetiteError, match="different settings"):
        _run(tmp_path, resume=True, job={"spec": "other"})


def test_altered_checkpoint_is_refused(tmp_path):
    _run(tmp_path, cancel_at=(2, 0))
    folder = tmp_path / "run.ckpt"
    tensors = next(folder.glob("epoch-*.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-100] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(PetiteError, match="SHA-256"):
        ckpt.load_checkpoint(folder)


def test_rng_state_round_trip():
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    tensors, scalars = ckpt.rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(7), np.random.rand(2), random.random()
    ckpt.restore_rng_state(tensors, scalars)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_schedule_warms_up_then_anneals_to_zero():
    schedule = CosineSchedule(1.0, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(11):
        lrs.append(schedule.lr())
        schedule.advance()
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0
    assert lrs[-1] == pytest.approx(0.0) and all(a >= b for a, b in zip(lrs[2:], lrs[3:]))


def _scripted_fit(folder, scores, patience, resume=False, stop_after=None):
    """A fit whose validation PSNR follows ``scores`` (one per epoch); cancelled after epoch ``stop_after``
    (with ``resume``: continues the run that was cancelled there)."""
    model = nn.Conv3d(1, 1, 1)
    objective = L1Objective(model, adamw(model, 1e-3, 0.0), CosineSchedule(1e-3, len(scores), 1))
    token, validated = CancelToken(), []

    def batches(epoch):
        if stop_after is not None and not resume and epoch > stop_after:
            token.cancel()
        x = torch.rand(1, 1, 4, 4, 4)
        yield x, x

    def validate():
        validated.append(len(validated))
        return {"psnr": scores[len(validated) - 1 + (stop_after or 0) * resume]}

    plan = FitPlan(epochs=len(scores), steps_per_epoch=1, batches_for_epoch=batches, validate=validate,
                   on_best=lambda epoch, metrics: None, set_mode=model.train, checkpoint_dir=folder / "run.ckpt",
                   job={"spec": "toy"}, device=torch.device("cpu"), patience=patience)
    try:
        return fit(objective, plan, resume=resume, cancel=token)
    except Cancelled:
        return None


def test_early_stopping_keeps_the_best_epoch_and_survives_a_resume(tmp_path):
    scores = [20.0, 22.0, 23.0, 22.5, 22.9, 22.1, 24.0, 21.0]
    stopped = _scripted_fit(tmp_path / "a", scores, patience=3)
    assert (stopped.epochs, stopped.best_epoch, stopped.best_metrics["psnr"]) == (6, 3, 23.0)
    assert _scripted_fit(tmp_path / "b", scores, patience=0).epochs == 8  # no patience: every epoch
    assert _scripted_fit(tmp_path / "c", scores, patience=3, stop_after=4) is None  # interrupted after epoch 4
    resumed = _scripted_fit(tmp_path / "c", scores, patience=3, resume=True, stop_after=4)
    assert (resumed.epochs, resumed.best_epoch) == (6, 3)


def test_cpu_time_sums_over_a_resume_and_leaves_out_waiting(tmp_path):
    _run(tmp_path, cancel_at=(3, 1))
    recorded = json.loads((tmp_path / "run.ckpt" / "state.json").read_text())["cpu_seconds"]
    assert recorded > 0
    resumed, _, _ = _run(tmp_path, resume=True, wait_in_epoch=4)
    assert resumed.cpu_seconds > recorded
    assert resumed.seconds - resumed.cpu_seconds > 0.5  # the wait is wall time, not CPU time
    assert resumed.summary()["cpu_seconds"] == round(resumed.cpu_seconds, 2)


def test_a_resume_from_a_checkpoint_without_cpu_time_records_none(tmp_path):
    _run(tmp_path, cancel_at=(3, 1))
    state_file = tmp_path / "run.ckpt" / "state.json"
    state = json.loads(state_file.read_text())
    del state["cpu_seconds"]  # a checkpoint of a version that did not count it
    state_file.write_text(json.dumps(state))
    resumed, _, _ = _run(tmp_path, resume=True)
    assert resumed.cpu_seconds is None and resumed.summary()["cpu_seconds"] is None
    assert resumed.seconds > 0

