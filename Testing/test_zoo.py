"""The model zoo: shipped names, ``--adapter auto``, SHA-256 checks, ``petite zoo list``, the demo,
and the shipped ``Resources/Models`` themselves (their recorded held-out metrics)."""
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from phantom_head import affine_for, short_and_long

from PETITELib import api
from PETITELib.backbones import build_backbone
from PETITELib.cli import main
from PETITELib.errors import PetiteError
from PETITELib.nifti_io import load_volume, save_volume
from PETITELib.peft import apply_peft, save_adapter, save_base_model
from PETITELib.zoo import choose_models, load_manifest, verify_entry
from PETITELib.zoo.manifest import MANIFEST_NAME, file_sha256
from PETITELib.engine.zoo_rebuild import MAX_ZOO_MB, ZOO_RECIPES, ZooRecipe, recipe_steps, zoo_steps

SHAPE = (70, 66, 40)
SPACING = (2.0, 2.0, 2.4)
SHIPPED = Path(__file__).resolve().parents[1] / "Resources" / "Models"


def _record(folder: Path, name: str, kind: str, file: str, **extra) -> dict:
    path = folder / file
    return {"name": name, "kind": kind, "file": file, "sha256": file_sha256(path), "size": path.stat().st_size,
            "backbone": "cvtgan", "preset": "cpu", **extra}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A tiny zoo (untrained CvT-GAN base, adapters for a 70x66x40 grid and for scanner 5's) and a scan."""
    root = tmp_path_factory.mktemp("zoo")
    folder = root / "Models"
    folder.mkdir()
    torch.manual_seed(0)
    model = build_backbone("cvtgan", "cpu")
    save_base_model(folder / "base.safetensors", model)
    models = [_record(folder, "base", "base", "base.safetensors", scanner={"id": 1})]
    scanners = {"scanner4": {"matrix": list(SHAPE), "spacing": list(SPACING)}, "scanner5": {"id": 5}}
    for index, (name, scanner) in enumerate(scanners.items()):
        torch.manual_seed(10 + index)
        apply_peft(model, "petite")
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(0.05 * torch.randn_like(parameter))
        save_adapter(folder / f"{name}.safetensors", model, scanner=scanner)
        from PETITELib.peft import remove_peft
        remove_peft(model)
        models.append(_record(folder, name, "adapter", f"{name}.safetensors", base="base", spec="petite",
                              scanner=scanner, description=name))
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": "petite-zoo", "format_version": 1, "models": models}))
    short, long, _ = short_and_long(SHAPE, seed=4)
    scan = {"short": save_volume(root / "short.nii.gz", short, affine_for(SPACING)),
            "long": save_volume(root / "long.nii.gz", long, affine_for(SPACING))}
    return folder, scan


@pytest.fixture
def shipped(zoo, monkeypatch):
    folder, scan = zoo
    monkeypatch.setenv("PETITE_ZOO_DIR", str(folder))
    return folder, scan


def test_no_base_means_the_shipped_base(shipped, tmp_path):
    folder, scan = shipped
    volume = load_volume(scan["short"])
    default = api.reconstruct(volume.array, volume.affine, device="cpu")
    explicit = api.reconstruct(volume.array, volume.affine, base=folder / "base.safetensors", device="cpu")
    np.testing.assert_array_equal(default, explicit)


def test_adapter_by_name_and_auto(shipped, tmp_path, capsys):
    folder, scan = shipped
    outputs = {}
    for label, value in (("path", str(folder / "scanner4.safetensors")), ("name", "scanner4"), ("auto", "auto"),
                         ("none", "none")):
        out = tmp_path / f"{label}.nii.gz"
        assert main(["reconstruct", str(scan["short"]), "-o", str(out), "--adapter", value, "--device", "cpu",
                     "--quiet"]) == 0
        outputs[label] = load_volume(out).array
    assert "adapter auto: chose 'scanner4'" in capsys.readouterr().out
    np.testing.assert_array_equal(outputs["name"], outputs["path"])
    np.testing.assert_array_equal(outputs["auto"], outputs["path"])
    assert not np.array_equal(outputs["none"], outputs["path"])


def test_auto_without_a_fitting_adapter_uses_the_base(shipped):
    folder, _ = shipped
    choice = choose_models(None, "auto", shape=(100, 100, 50), spacing=(1.0, 1.0, 1.0))
    assert choice.adapter is None and choice.base == folder / "base.safetensors"
    assert "no shipped adapter fits a 100x100x50 at 1x1x1 mm volume" in choice.note
    scanner5 = choose_models(None, "auto", shape=(128, 128, 63), spacing=(2.05941, 2.05941, 2.425))
    assert scanner5.adapter == folder / "scanner5.safetensors"


def test_unknown_name_lists_the_shipped_adapters(shipped, tmp_path, capsys):
    _, scan = shipped
    assert main(["reconstruct", str(scan["short"]), "-o", str(tmp_path / "x.nii.gz"), "--adapter", "scanner9",
                 "--device", "cpu", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "scanner9" in error and "scanner4, scanner5" in error


@pytest.mark.parametrize("victim", ["base.safetensors", "scanner4.safetensors"])
def test_corrupted_shipped_file_is_refused_naming_it(zoo, tmp_path, monkeypatch, capsys, victim):
    folder, scan = zoo
    copy = tmp_path / "Models"
    shutil.copytree(folder, copy)
    data = bytearray((copy / victim).read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    (copy / victim).write_bytes(bytes(data))
    monkeypatch.setenv("PETITE_ZOO_DIR", str(copy))
    assert main(["reconstruct", str(scan["short"]), "-o", str(tmp_path / "x.nii.gz"), "--adapter", "scanner4",
                 "--device", "cpu", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(copy / victim) in error and "corrupted" in error
    assert not (tmp_path / "x.nii.gz").exists()
    (copy / victim).write_bytes(bytes(data[:-1]))  # truncated
    with pytest.raises(PetiteError, match="corrupted"):
        verify_entry(load_manifest(copy).entry(victim.split(".")[0]))


def test_zoo_list_shows_models_and_verifies(shipped, capsys):
    assert main(["zoo", "list", "--verify"]) == 0
    out = capsys.readouterr().out
    for name in ("base", "scanner4", "scanner5"):
        assert f"\n{name} " in out
    assert "SHA-256 verified" in out


def test_missing_zoo_gives_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(PetiteError, match="no base model given and no shipped base model"):
        choose_models(None, None)
    assert main(["zoo", "list"]) == 2
    assert "no model zoo here" in capsys.readouterr().err


def test_demo_reconstructs_with_the_shipped_adapter(shipped, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    for label in ("short scan", "base model", "base + scanner4"):
        assert re.search(re.escape(label) + r" +vs long scan: PSNR", out), label
    assert (tmp_path / "demo" / "reconstruction_comparison.png").is_file()
    assert main(["demo", "--out", str(tmp_path / "demo"), "--device", "cpu", "--quiet"]) == 2  # no overwrite


def test_recipe_commands_are_complete_and_seeded():
    steps = recipe_steps(ZooRecipe(), jobs=2)
    assert list(steps) == ["simulate-source", "simulate-target", "base", "scanner4", "scanner5", "scanner2",
                           "scanner3"]
    for step in steps.values():
        assert "--seed" in step.arguments and "{work}" in " ".join(step.arguments)
    assert steps["scanner4"].arguments[:1] == ("finetune",) and "petite" in steps["scanner4"].arguments


def test_each_backbone_has_its_own_names_and_shares_the_cohorts():
    steps = zoo_steps(ZOO_RECIPES)
    assert [r.backbone for r in ZOO_RECIPES] == ["unetr", "cvtgan"]
    assert list(steps) == ["simulate-source", "simulate-target", "base", "scanner4", "scanner5", "scanner2",
                           "scanner3", "cvtgan-base", "cvtgan-scanner4", "cvtgan-scanner5", "cvtgan-scanner2",
                           "cvtgan-scanner3"]
    cvtgan = " ".join(steps["cvtgan-scanner4"].arguments)
    assert "--base {work}/models/cvtgan-cpu-base.safetensors" in cvtgan and "cvtgan-cpu-scanner4-petite-lr0.003" in cvtgan
    assert "--backbone cvtgan" in " ".join(steps["cvtgan-base"].arguments)
    with pytest.raises(PetiteError, match="differ in target_seed"):
        zoo_steps((ZooRecipe(), ZooRecipe(backbone="cvtgan", name_prefix="c-", target_seed=7)))
    with pytest.raises(PetiteError, match="model name 'base' repeats"):
        zoo_steps((ZooRecipe(), ZooRecipe(backbone="cvtgan")))


def _two_backbone_zoo(folder: Path) -> Path:
    """A zoo folder whose manifest lists a UNETR and a CvT-GAN base with one adapter each (small
    stand-in files: only names, paths and hashes are read)."""
    folder.mkdir()
    models = []
    for prefix, backbone in (("", "unetr"), ("cvtgan-", "cvtgan")):
        for name, kind in ((f"{prefix}base", "base"), (f"{prefix}scanner4", "adapter")):
            (folder / f"{name}.safetensors").write_bytes(name.encode())
            extra = {"base": f"{prefix}base"} if kind == "adapter" else {}
            models.append({**_record(folder, name, kind, f"{name}.safetensors", scanner={"id": 4}, **extra),
                           "backbone": backbone})
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": "petite-zoo", "format_version": 1, "models": models,
                                                    "half_precision": {"max_abs_psnr_change_db": 0.002}}))
    return folder


def test_each_shipped_base_offers_only_its_own_adapters(tmp_path):
    from PETITELib.zoo import available_adapters

    folder = _two_backbone_zoo(tmp_path / "zoo")
    assert [e.name for e in load_manifest(folder).bases] == ["base", "cvtgan-base"]
    assert [e.name for e in available_adapters(None, zoo=folder)] == ["scanner4"]  # the default: the first base
    assert [e.name for e in available_adapters("cvtgan-base", zoo=folder)] == ["cvtgan-scanner4"]
    assert [e.name for e in available_adapters(str(folder / "cvtgan-base.safetensors"), zoo=folder)] == \
        ["cvtgan-scanner4"]
    assert available_adapters(str(tmp_path / "elsewhere.safetensors"), zoo=folder) == []


def test_a_partial_rebuild_keeps_the_other_backbones_verified_and_unchanged(tmp_path):
    from PETITELib.engine.zoo_rebuild import rebuild_zoo

    old = _two_backbone_zoo(tmp_path / "old")
    document = rebuild_zoo(tmp_path / "work", tmp_path / "new", only=[], carry_from=old, device="cpu")
    assert [m["name"] for m in document["models"]] == ["base", "scanner4", "cvtgan-base", "cvtgan-scanner4"]
    assert document["rebuild"]["kept"] == ["unetr", "cvtgan"] and document["rebuild"]["rebuilt"] == []
    assert document["half_precision"]["max_abs_psnr_change_db"] == 0.002
    for entry in load_manifest(tmp_path / "new").entries:
        assert verify_entry(entry).read_bytes() == (old / entry.path.name).read_bytes()
    with pytest.raises(PetiteError, match="no zoo recipe for it"):
        rebuild_zoo(tmp_path / "work", tmp_path / "other", only=["dit"], carry_from=old)

    # A backbone the old zoo never shipped stays out (no models, no commands).
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    unetr_only = tmp_path / "unetr-only"
    shutil.copytree(old, unetr_only)
    (unetr_only / MANIFEST_NAME).write_text(json.dumps(
        {**manifest, "models": [m for m in manifest["models"] if m["backbone"] == "unetr"]}))
    document = rebuild_zoo(tmp_path / "work", tmp_path / "new2", only=[], carry_from=unetr_only, device="cpu")
    assert [m["name"] for m in document["models"]] == ["base", "scanner4"]
    assert (document["rebuild"]["kept"], document["rebuild"]["absent"]) == (["unetr"], ["cvtgan"])
    assert not any("cvtgan" in c for c in document["rebuild"]["commands"])
    assert [r["backbone"] for r in document["rebuild"]["recipes"]] == ["unetr"]
    (old / "cvtgan-scanner4.safetensors").write_bytes(b"damaged")
    with pytest.raises(PetiteError, match="cvtgan-scanner4.safetensors: shipped model 'cvtgan-scanner4' is corrupted"):
        rebuild_zoo(tmp_path / "work", tmp_path / "other", only=[], carry_from=old)
    assert not (tmp_path / "other").exists()


def test_shipped_zoo_is_intact_small_and_each_adapter_helps():
    """The models in Resources/Models: files match the manifest, fit the size limit, and on held-out
    simulated subjects base + adapter beats the base alone, which beats the short scan."""
    manifest = load_manifest(SHIPPED)
    assert manifest.base is not None and manifest.base.record["backbone"] == "unetr"
    for base in manifest.bases:
        prefix = base.name[:-len("base")]
        assert {e.name for e in manifest.adapters if e.record["base"] == base.name} == \
            {f"{prefix}scanner{k}" for k in (2, 3, 4, 5)}
    assert sum(verify_entry(e).stat().st_size for e in manifest.entries) <= MAX_ZOO_MB * 2 ** 20
    for entry in manifest.adapters:
        metrics = entry.record["metrics"]
        short, base, adapted = (metrics[k]["mean"]["psnr"] for k in ("input", "no-ft", "adapter"))
        assert adapted > base > short, (entry.name, short, base, adapted)
        assert entry.record["command"].startswith("petite finetune") and "--seed" in entry.record["command"]
    assert manifest.base.record["command"].startswith("petite pretrain")


@pytest.mark.slow
def test_rebuild_runs_the_recipe_and_writes_a_loadable_zoo(tmp_path, monkeypatch):
    from PETITELib.engine.zoo_rebuild import rebuild_zoo

    tiny = ZooRecipe(source_subjects=3, target_scanners=(5,), target_subjects=5, finetune_subjects=3,
                     simulate_mode="fast",
                     pretrain_options=("--epochs", "1", "--val-subjects", "1", "--crops-per-subject", "1",
                                       "--batch-size", "2"),
                     finetune_options=("--epochs", "1", "--val-subjects", "1", "--crops-per-subject", "1",
                                       "--batch-size", "2"))
    document = rebuild_zoo(tmp_path / "work", tmp_path / "zoo", recipes=(tiny,), device="cpu")
    assert [m["name"] for m in document["models"]] == ["base", "scanner5"]
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path / "zoo"))
    manifest = load_manifest()
    for entry in manifest.entries:
        verify_entry(entry)
    adapter = manifest.entry("scanner5").record
    assert adapter["metrics"]["subjects"] == ["sub-004", "sub-005"] and adapter["command"].startswith("petite finetune")
    assert choose_models(None, "auto", shape=(128, 128, 63), spacing=(2.05941, 2.05941, 2.425)).adapter \
        == tmp_path / "zoo" / "unetr-cpu-scanner5-petite.safetensors"
    with pytest.raises(PetiteError, match="already exists"):
        rebuild_zoo(tmp_path / "work", tmp_path / "zoo", recipes=(tiny,), device="cpu")

    # A CvT-GAN rebuild in the same work folder keeps that zoo's UNETR files byte for byte.
    tiny_cvtgan = replace(tiny, backbone="cvtgan", name_prefix="cvtgan-")
    both = rebuild_zoo(tmp_path / "work", tmp_path / "zoo2", recipes=(tiny, tiny_cvtgan), only=["cvtgan"],
                       carry_from=tmp_path / "zoo", device="cpu")
    assert [m["name"] for m in both["models"]] == ["base", "scanner5", "cvtgan-base", "cvtgan-scanner5"]
    assert both["models"][:2] == document["models"]
    assert both["models"][3]["base"] == "cvtgan-base" and "--backbone cvtgan" in both["models"][2]["command"]
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path / "zoo2"))
    assert choose_models("cvtgan-base", "auto", shape=(128, 128, 63), spacing=(2.05941, 2.05941, 2.425)).adapter \
        == tmp_path / "zoo2" / "cvtgan-cpu-scanner5-petite.safetensors"

    # The scanner gap reuses the work folder's cohorts and base and adds Full-FT per target.
    from PETITELib.engine.scanner_gap import measure_scanner_gap

    result = measure_scanner_gap(tmp_path / "work", tmp_path / "gap.json", recipe=tiny, device="cpu")
    assert result["source"] == 1 and list(result["targets"]) == ["5"]
    entry = result["targets"]["5"]
    for row in ("input", "no-ft", "full"):
        assert {"psnr", "ssim", "psnr_truth", "ssim_truth"} <= set(entry[row])
    assert entry["gap"]["n"] == 2
    assert entry["gap"]["mean"] == pytest.approx(entry["full"]["psnr"] - entry["no-ft"]["psnr"])
    assert (tmp_path / "gap.md").read_text().startswith("# Scanner gap")
    assert (tmp_path / "work" / "models" / "unetr-cpu-scanner5-full-lr0.001.safetensors").is_file()


@pytest.mark.slow
def test_demo_can_also_finetune_a_new_adapter(shipped, tmp_path):
    """Slow (over a minute on 2 cores): simulates, fine-tunes and reconstructs three times."""
    from PETITELib.engine.demo import DemoPlan, run_demo

    plan = DemoPlan(train_subjects=3, finetune_epochs=1, crops_per_subject=1, batch_size=2)
    result = run_demo(tmp_path / "demo", scanner=5, device="cpu", train=True, plan=plan)
    assert list(result.metrics) == ["short scan", "base model", "base + scanner5", "base + new adapter"]
    assert (tmp_path / "demo" / "scanner5-petite-new.safetensors").is_file()
    assert (tmp_path / "demo" / "reconstruction_new_adapter_comparison.png").is_file()


def test_keep_base_puts_the_shipped_base_in_the_work_folder_only_for_its_own_recipe(tmp_path):
    from PETITELib.engine.zoo_rebuild import keep_zoo_bases

    unetr, cvtgan = ZOO_RECIPES
    work = tmp_path / "work"
    [kept] = keep_zoo_bases((unetr,), work, SHIPPED)
    assert kept == work / "models" / "unetr-cpu-base.safetensors"
    assert kept.read_bytes() == (SHIPPED / "unetr-cpu-base.safetensors").read_bytes()
    assert keep_zoo_bases((unetr,), work, SHIPPED) == [kept]  # the same file again: nothing to do
    [kept_cvtgan] = keep_zoo_bases((cvtgan,), work, SHIPPED)
    assert kept_cvtgan.read_bytes() == (SHIPPED / "cvtgan-cpu-base.safetensors").read_bytes()
    unetr_only = tmp_path / "unetr-only-zoo"  # a zoo that ships no CvT-GAN model
    unetr_only.mkdir()
    document = json.loads((SHIPPED / "manifest.json").read_text())
    document["models"] = [m for m in document["models"] if m["backbone"] == "unetr"]
    (unetr_only / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(PetiteError, match="holds no cvtgan base 'cvtgan-base' to keep"):
        keep_zoo_bases((cvtgan,), tmp_path / "third", unetr_only)
    with pytest.raises(PetiteError, match=r"made by 'petite pretrain .*--seed 0.*', not by this recipe's"):
        keep_zoo_bases((replace(unetr, seed=1),), tmp_path / "other", SHIPPED)
    kept.write_bytes(kept.read_bytes()[:-8] + b"elsewise")
    with pytest.raises(PetiteError, match="unetr-cpu-base.safetensors: differs from the zoo's"):
        keep_zoo_bases((unetr,), work, SHIPPED)
    assert not (tmp_path / "other").exists()
