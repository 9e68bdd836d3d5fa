"""Multi-process training under torchrun (DistributedDataParallel, gloo on the CPU).

Equivalence (slow): ``petite finetune`` of the shipped cpu-preset UNETR base with 2 processes
(each training 2 of every 4 crops) against one process with the same global batch of 4, on a
4-subject phantom cohort (3 training subjects x 3 crops = 9 crops: batches of 4, 4 and 1, so the
last batch leaves one process without a crop). Tolerance: every recorded loss and validation
metric within 1e-5 relative, every adapter tensor within 1e-5 absolute (measured: losses equal to
the 6 recorded decimals, tensors within 2.4e-7; the differences come from summing the batch's
gradients in two halves). UNETR has no batch statistics, so nothing else differs.
"""
import os
import subprocess
import sys

import pytest
import torch
from phantom_head import write_plain_cohort

from PETITELib import api
from PETITELib.data.cohort import load_cohort
from PETITELib.data.pipeline import CropDataset, prepare_subjects
from PETITELib.engine.batches import epoch_batches
from PETITELib.engine.checkpoint import checkpoint_folder
from PETITELib.engine.distributed import Processes, _BatchShare, sharded_batches, training_processes
from PETITELib.errors import Cancelled
from PETITELib.peft import read_adapter
from PETITELib.progress import CancelToken

SETTINGS = dict(epochs=2, batch_size=4, crops_per_subject=3, val_subjects=1, val_every=1)


def _options(settings: dict) -> list:
    options = []
    for name, value in settings.items():
        options += ["--" + name.replace("_", "-"), str(value)]
    return options


def torchrun(arguments: list, processes: int = 2) -> None:
    """``torchrun --nproc-per-node N -m PETITELib.cli ARGUMENTS`` on this machine (gloo, loopback)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "PETITELib.cli", *arguments]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_plain_cohort(tmp_path_factory.mktemp("ddp") / "cohort", 4, shape=(64, 64, 44))


def test_one_process_without_torchrun():
    assert "WORLD_SIZE" not in os.environ
    processes = training_processes("cpu")
    assert (processes.rank, processes.world_size, processes.is_main, processes.distributed) == (0, 1, True, False)


def test_each_process_reads_its_share_of_every_global_batch(cohort):
    subjects = prepare_subjects(load_cohort(cohort).subjects[:3])
    dataset = CropDataset(subjects, samples_per_subject=3, seed=7)
    single = list(epoch_batches(dataset, 4, 7, 2))
    shares = [_BatchShare(), _BatchShare()]
    iterators = [sharded_batches(dataset, 4, 7, Processes(r, 2, torch.device("cpu")), shares[r])(2) for r in (0, 1)]
    for (short, long) in single:
        (short0, long0), (short1, long1) = next(iterators[0]), next(iterators[1])
        weights = [shares[0].weight, shares[1].weight]
        assert sum(weights) == pytest.approx(1.0)
        assert weights == [len(short0) / len(short), (len(short) - len(short0)) / len(short)]
        if len(short) == 1:  # the last crop: process 1 takes part with weight 0
            assert torch.equal(short0, short) and torch.equal(short1, short) and weights == [1.0, 0.0]
        else:
            assert torch.equal(short0, short[0::2]) and torch.equal(short1, short[1::2])
            assert torch.equal(long0, long[0::2]) and torch.equal(long1, long[1::2])
    assert [len(s) for s, _ in single] == [4, 4, 1]


def _assert_same_run(first, second):
    a, b = read_adapter(first), read_adapter(second)
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        assert torch.allclose(a.tensors[name], b.tensors[name], rtol=0, atol=1e-5), name
    history_a, history_b = a.metadata.training["history"], b.metadata.training["history"]
    assert [r["epoch"] for r in history_a] == [r["epoch"] for r in history_b]
    for ra, rb in zip(history_a, history_b):
        for key in ra:
            if key != "epoch":
                assert rb[key] == pytest.approx(ra[key], rel=1e-5), (ra["epoch"], key)
    assert a.metadata.training["best_epoch"] == b.metadata.training["best_epoch"]


@pytest.mark.slow
def test_two_processes_follow_one_process_with_the_same_global_batch_and_resume(cohort, tmp_path):
    single = api.finetune(cohort, peft="petite", out=tmp_path / "single.safetensors", seed=1, device="cpu",
                          **SETTINGS)
    common = ["finetune", "--cohort", str(cohort), "--peft", "petite", "--seed", "1", "--device", "cpu",
              "--quiet", *_options(SETTINGS)]
    torchrun([*common, "--out", str(tmp_path / "ddp.safetensors")])
    assert read_adapter(tmp_path / "ddp.safetensors").metadata.training["processes"] == 2
    assert read_adapter(single).metadata.training["processes"] == 1
    _assert_same_run(single, tmp_path / "ddp.safetensors")
    assert not checkpoint_folder(tmp_path / "ddp.safetensors").exists()

    # A run interrupted after epoch 1 (one process) resumes under torchrun and ends where the straight run does.
    token, interrupted = CancelToken(), tmp_path / "resumed.safetensors"

    def cancel_in_second_epoch(event):
        if event.stage == "finetune" and event.step == 4:  # 3 steps per epoch: first batch of epoch 2 done
            token.cancel()

    with pytest.raises(Cancelled):
        api.finetune(cohort, peft="petite", out=interrupted, seed=1, device="cpu", progress=cancel_in_second_epoch,
                     cancel=token, **SETTINGS)
    torchrun([*common, "--out", str(interrupted), "--resume"])
    assert read_adapter(interrupted).metadata.training["resumed_from_epoch"] == 1
    _assert_same_run(single, interrupted)


@pytest.mark.slow
def test_a_cvtgan_pretrains_with_two_processes(cohort, tmp_path):
    from PETITELib.peft import load_base_model

    out = tmp_path / "cvtgan.safetensors"
    torchrun(["pretrain", "--backbone", "cvtgan", "--cohort", str(cohort), "--device", "cpu", "--quiet",
              "--out", str(out), *_options(dict(epochs=1, batch_size=2, crops_per_subject=1, val_subjects=1))])
    training = load_base_model(out).metadata["training"]
    assert training["processes"] == 2 and training["complete"] and training["epochs"] == 1
    assert not checkpoint_folder(out).exists()


def test_the_training_forward_goes_through_the_gradient_exchange(tmp_path):
    """The objective's forward must run through the DDP wrapper: a process whose share of the batch is 0
    then contributes no gradient (its parameters stay put), where a forward that bypasses the wrapper
    would train on its own crops alone."""
    import torch.distributed as dist

    from PETITELib.engine.distributed import DistributedObjective
    from PETITELib.engine.objectives import L1Objective, adamw
    from PETITELib.engine.schedule import CosineSchedule

    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 1, 3, padding=1)
    objective = L1Objective(model, adamw(model, 1e-2, 0.0), CosineSchedule(1e-2, 4, 0))
    before = [p.detach().clone() for p in model.parameters()]
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        share = _BatchShare()
        distributed = DistributedObjective(objective, Processes(0, 1, torch.device("cpu")), share)
        assert isinstance(objective.forward, torch.nn.parallel.DistributedDataParallel)
        share.weight = 0.0
        distributed.step(torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8))
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        share.weight = 1.0
        distributed.step(torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8))
        assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    finally:
        dist.destroy_process_group()
