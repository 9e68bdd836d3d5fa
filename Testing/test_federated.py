"""Federated fine-tuning on NVIDIA FLARE: plan, site trainer, wire filter, result file, and (slow) a
2-round, 2-site job in FLARE's simulator on tiny fast-mode cohorts of scanner 4.

The shipped cpu-preset UNETR base is the federation's base; nothing here depends on its weights.
"""
import json
import shutil

import numpy as np
import pytest
import torch

from PETITELib.engine.jobs import host_state_kept
from PETITELib.engine.models import resolve_base
from PETITELib.errors import PetiteError
from PETITELib.federated.plan import check_site_names, make_plan, parse_site, read_plan, site_paths
from PETITELib.peft import load_base_model, read_adapter, save_base_model

TINY = dict(batch_size=2, crops_per_subject=1, val_subjects=1)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Two sites of scanner 4 (fast mode, other subjects per site): 2 subjects each (1 train, 1 validation)."""
    from PETITELib.data.simulator import simulate_cohort

    root = tmp_path_factory.mktemp("sites")
    return {name: simulate_cohort(root / name, scanners=[4], subjects=2, seed=seed, mode="fast")[0]
            for name, seed in (("hospital-a", 11), ("hospital-b", 12))}


@pytest.fixture(scope="module")
def plan_and_initial(cohorts, tmp_path_factory):
    initial = tmp_path_factory.mktemp("plan") / "initial.safetensors"
    plan = make_plan("petite-test", None, {k: str(v) for k, v in cohorts.items()}, rounds=2, local_epochs=1,
                     seed=5, initial_adapter=initial, **TINY)
    return plan, initial


def test_the_plan_names_base_spec_sites_and_adapter_tensors_and_round_trips(plan_and_initial, tmp_path):
    plan, initial = plan_and_initial
    assert plan.backbone == "unetr" and plan.spec == read_adapter(initial).metadata.spec
    assert plan.base_sha256 == read_adapter(initial).metadata.base_sha256
    assert plan.settings["epochs"] == 2 and plan.settings["batch_size"] == 2
    assert {k: list(v.shape) for k, v in read_adapter(initial).tensors.items()} == plan.adapter_tensors
    assert 0 < plan.parameters["percent"] < 2
    assert plan.adapter_bytes == 4 * plan.parameters["trainable"]
    assert read_plan(plan.write(tmp_path / "plan.json")) == plan
    cohort, base = site_paths(plan, "hospital-b", environ={"PETITE_FL_COHORT": "/elsewhere"})
    assert cohort == "/elsewhere" and base == str(resolve_base(None))


def test_bad_sites_and_options_are_refused_in_one_line():
    with pytest.raises(PetiteError, match="NAME=COHORT"):
        parse_site("hospital-a")
    with pytest.raises(PetiteError, match="given twice"):
        check_site_names(["a", "a"])
    with pytest.raises(PetiteError, match="not 'server'"):
        check_site_names(["server"])
    with pytest.raises(PetiteError, match="--rounds"):
        make_plan("x", None, {"a": "/data"}, rounds=0)
    with pytest.raises(PetiteError, match="--peft full"):
        make_plan("x", None, {"a": "/data"}, peft="full")


def test_a_site_refuses_a_base_that_is_not_the_federations(plan_and_initial, tmp_path):
    from PETITELib.federated.site import SiteTrainer

    plan, _ = plan_and_initial
    other = load_base_model(resolve_base(None))
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)
    changed = tmp_path / "other-base.safetensors"
    save_base_model(changed, other.model)
    with host_state_kept(), pytest.raises(PetiteError, match="not the federation's base"):
        SiteTrainer(plan, "hospital-a", base=changed, device="cpu")
    with pytest.raises(PetiteError, match="not part of federation"):
        site_paths(plan, "hospital-z")


def test_a_site_round_trains_only_the_adapter_from_the_global_tensors(plan_and_initial):
    from PETITELib.federated.site import SiteTrainer

    plan, initial = plan_and_initial
    with host_state_kept():
        site = SiteTrainer(plan, "hospital-a", device="cpu")
        start = {k: v.numpy() for k, v in read_adapter(initial).tensors.items()}
        site.set_global(start)
        before = site.validate()
        loss = site.train_round(0)["loss"]
        after = site.adapter_tensors()
    assert set(after) == set(plan.adapter_tensors) and loss > 0 and before["psnr"] > 0
    assert all(after[k].dtype == np.float32 and list(after[k].shape) == plan.adapter_tensors[k] for k in after)
    assert any(not np.array_equal(after[k], start[k]) for k in after)
    assert site.crops_per_round == 1  # 1 training subject x 1 crop x 1 local epoch: its weight in the average
    with pytest.raises(PetiteError, match="differ from the plan"):
        site.set_global({**start, "extra.weight": np.zeros(3, np.float32)})


def test_the_wire_check_passes_adapter_tensors_and_metrics_and_blocks_anything_else(plan_and_initial):
    pytest.importorskip("nvflare")
    from nvflare.apis.dxo import DXO, DataKind

    from PETITELib.federated.wire import inspect_result

    plan, initial = plan_and_initial
    tensors = {k: v.numpy() for k, v in read_adapter(initial).tensors.items()}
    ok = inspect_result(DXO(DataKind.WEIGHTS, tensors, {"NUM_STEPS_CURRENT_ROUND": 4,
                                                        "petite_scanner": {"matrix": [128, 128, 90]}}), plan)
    assert ok["problems"] == [] and ok["tensor_bytes"] == sum(v.nbytes for v in tensors.values())
    assert inspect_result(DXO(DataKind.METRICS, {"val_psnr": 30.1}, {}), plan)["problems"] == []
    image = np.zeros((128, 128, 90), np.float32)
    blocked = [
        DXO(DataKind.WEIGHTS, {**tensors, "short_scan": image}, {}),                   # an extra array
        DXO(DataKind.WEIGHTS, {**tensors, "out.conv.conv.weight": np.zeros((1, 16, 1, 1, 1), np.float32)}, {}),
        DXO(DataKind.WEIGHTS, {k: v.astype(np.float64) for k, v in tensors.items()}, {}),
        DXO(DataKind.WEIGHTS, tensors, {"crop": image}),                                 # an array in the metadata
        DXO(DataKind.METRICS, {"val_psnr": 30.1}, {"subjects": [{"scan": image.tobytes()[:8]}]}),
        DXO(DataKind.COLLECTION, {"anything": 1}, {}),
    ]
    for dxo in blocked:
        assert inspect_result(dxo, plan)["problems"], dxo.data_kind


def test_the_result_file_is_an_ordinary_adapter_naming_the_federation(plan_and_initial, tmp_path):
    pytest.importorskip("nvflare")
    from PETITELib.engine.models import load_for_inference
    from PETITELib.federated.persistor import adapter_document
    from PETITELib.peft.safetensors_io import write_tensors

    plan, initial = plan_and_initial
    summary = {"best_round": 1, "val_metrics": {"psnr": 30.0}, "complete": True, "history": [],
               "scanners": {"hospital-a": {"matrix": [128, 128, 90], "spacing": [2.0, 2.0, 2.0]}}}
    out = tmp_path / "federated.safetensors"
    write_tensors(out, read_adapter(initial).tensors, adapter_document(plan, summary))
    meta = read_adapter(out).metadata
    assert meta.spec == plan.spec and meta.base_sha256 == plan.base_sha256
    assert meta.training["sites"] == ["hospital-a", "hospital-b"] and meta.training["rounds"] == 2
    assert meta.training["federated"] and meta.scanner["matrix"] == [128, 128, 90]
    model = load_for_inference(None, out, torch.device("cpu"))
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 1, 64, 64, 64)


def test_the_job_command_writes_a_flare_job_for_the_sites(cohorts, tmp_path, capsys):
    pytest.importorskip("nvflare")
    from PETITELib.cli import main

    sites = [f"--site={name}={folder}" for name, folder in cohorts.items()]
    assert main(["federated", "job", *sites, "--rounds", "3", "--out", str(tmp_path), "--name", "scanner4"]) == 0
    job = tmp_path / "scanner4"
    assert str(job) in capsys.readouterr().out
    meta = json.loads((job / "meta.json").read_text())
    assert meta["deploy_map"] == {"app_server": ["server"], "app_hospital-a": ["hospital-a"],
                                  "app_hospital-b": ["hospital-b"]}
    server = json.loads((job / "app_server/config/config_fed_server.json").read_text())
    assert server["workflows"][0]["path"] == "PETITELib.federated.controller.PetiteFedAvg"
    assert server["workflows"][0]["args"]["num_rounds"] == 3
    client = json.loads((job / "app_hospital-a/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"]["task_script_path"] == "petite_site.py"
    assert (job / "app_hospital-a/custom/petite_site.py").exists()
    assert read_plan(job / "app_hospital-b/config/petite_federation.json").rounds == 3
    assert read_adapter(job / "app_server/config/initial_adapter.safetensors").metadata.spec
    assert main(["federated", "job", *sites, "--out", str(tmp_path), "--name", "scanner4"]) == 2  # exists


def test_the_average_weights_each_site_by_its_training_crops():
    pytest.importorskip("nvflare")
    from nvflare.apis.fl_constant import FLMetaKey
    from nvflare.app_common.abstract.fl_model import FLModel

    from PETITELib.federated.controller import PetiteFedAvg, round_record

    results = [FLModel(params={"w": np.full(3, value, np.float32)}, metrics={"val_psnr": psnr},
                       meta={FLMetaKey.NUM_STEPS_CURRENT_ROUND: crops, "client_name": name})
               for name, value, crops, psnr in (("a", 1.0, 16, 30.0), ("b", 4.0, 48, 31.0))]
    averaged = PetiteFedAvg.aggregate_fn(results)
    assert np.allclose(averaged.params["w"], (16 * 1.0 + 48 * 4.0) / 64)
    record = round_record(2, results)
    assert record["val_metrics"]["psnr"] == pytest.approx(30.5)  # the sites' mean, not crop-weighted
    assert record["sites"]["b"]["crops"] == 48


@pytest.mark.slow
def test_a_two_round_two_site_flare_simulation_sends_only_adapter_tensors(plan_and_initial, cohorts, tmp_path):
    pytest.importorskip("nvflare")
    from PETITELib import api
    from PETITELib.cli import main
    from PETITELib.data.cohort import load_cohort
    from PETITELib.federated.job import write_job
    from PETITELib.nifti_io import load_volume

    plan, initial = plan_and_initial
    job = write_job(plan, initial, tmp_path / "jobs")
    out = tmp_path / "federated.safetensors"
    assert main(["federated", "simulate", "--job", str(job), "--workspace", str(tmp_path / "ws"),
                 "--out", str(out)]) == 0

    training = read_adapter(out).metadata.training
    assert training["complete"] and training["sites"] == ["hospital-a", "hospital-b"]
    assert [r["round"] for r in training["history"]] == [0, 1, 2]  # initial, after round 1, after round 2
    assert all(set(r["sites"]) == {"hospital-a", "hospital-b"} for r in training["history"])
    best = training["history"][training["best_round"]]["val_metrics"]["psnr"]
    assert best == max(r["val_metrics"]["psnr"] for r in training["history"])
    subject = load_cohort(cohorts["hospital-a"]).subjects[0]
    short = load_volume(subject.short)
    estimate = api.reconstruct(short.array, short.affine, adapter=out, device="cpu")
    assert estimate.shape == short.array.shape and np.isfinite(estimate).all()

    # What crossed the wire, as the server received it and as each site sent it.
    base_bytes = resolve_base(None).stat().st_size
    adapter_bytes = plan.adapter_bytes
    server = [json.loads(line) for line in (tmp_path / "ws/server/simulate_job/petite_wire.jsonl").open()]
    assert sorted((e["task"], e["round"], e["site"]) for e in server) == sorted(
        [("train", r, s) for r in (0, 1) for s in ("hospital-a", "hospital-b")]
        + [("validate", 2, s) for s in ("hospital-a", "hospital-b")])
    for entry in server:
        assert entry["problems"] == []
        if entry["task"] == "train":
            assert entry["kind"] == "WEIGHTS" and set(entry["tensors"]) == set(plan.adapter_tensors)
            assert entry["tensor_bytes"] == adapter_bytes
            assert adapter_bytes < entry["bytes"] < adapter_bytes + 64_000 < base_bytes / 20
        else:
            assert entry["kind"] == "METRICS" and entry["tensors"] == {} and entry["bytes"] < 4_000
        assert set(entry["meta_keys"]) <= {"NUM_STEPS_CURRENT_ROUND", "initial_metrics", "petite_scanner"}
    for site in ("hospital-a", "hospital-b"):
        sent = [json.loads(line) for line in (tmp_path / f"ws/{site}/simulate_job/petite_wire.jsonl").open()]
        assert len(sent) == 3 and all(e["problems"] == [] and e["site"] == site for e in sent)
    shutil.rmtree(tmp_path / "ws", ignore_errors=True)
