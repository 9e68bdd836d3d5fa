"""Base-model and adapter files (safetensors + JSON metadata), checks on loading, switching."""
import json
import struct

import pytest
import torch
from safetensors.torch import save

from PETITELib.backbones import build_backbone, build_discriminator
from PETITELib.errors import PetiteError
from PETITELib.peft import (AdapterSwitcher, applied_peft, apply_peft, base_model_sha256, base_weights_sha256,
                            load_adapter, load_base_model, peft_state_dict, read_adapter, remove_peft,
                            save_adapter, save_base_model, trainable_parameters)
from PETITELib.peft.adapter_files import ADAPTER_FORMAT_VERSION
from PETITELib.peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
from PETITELib.peft.safetensors_io import copy_in_current_format, read_metadata, read_tensors, write_tensors


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.fixture(scope="module")
def volume():
    torch.manual_seed(0)
    return torch.rand(1, 1, 64, 64, 64)


@pytest.fixture()
def cvtgan_base(tmp_path):
    """A saved cpu-preset CvT-GAN base (with discriminator) and the loaded model."""
    torch.manual_seed(0)
    path = tmp_path / "base.safetensors"
    save_base_model(path, build_backbone("cvtgan", "cpu"), build_discriminator("cvtgan", "cpu"),
                    training={"epochs": 3, "scanner": "mct"})
    return path, load_base_model(path).model


def _output(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def _train_a_little(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in trainable_parameters(model).values():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def _one_line(info, path):
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("name", ["cvtgan", "unetr"])
def test_base_model_round_trip(tmp_path, volume, name):
    torch.manual_seed(0)
    model = build_backbone(name, "cpu", residual=False)
    path = tmp_path / "base.safetensors"
    sha = save_base_model(path, model, training={"epochs": 2})
    loaded = load_base_model(path)
    assert torch.equal(_output(loaded.model, volume), _output(model, volume))
    assert loaded.sha256 == sha == base_weights_sha256(model) == base_model_sha256(path)
    assert loaded.metadata["training"] == {"epochs": 2} and loaded.metadata["options"] == {"residual": False}
    assert loaded.discriminator is None and loaded.model.residual is False
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]  # safetensors: u64 length + JSON header
    assert json.loads(path.read_bytes()[8:8 + header_length])["__metadata__"]["petite"]


def test_discriminator_is_stored_under_a_prefix(cvtgan_base):
    path, _ = cvtgan_base
    assert any(k.startswith("discriminator.") for k in read_tensors(path))
    loaded = load_base_model(path)
    assert loaded.discriminator is not None and loaded.metadata["training"]["scanner"] == "mct"


def test_base_files_refuse_damage_overwrite_and_peft_models(tmp_path, cvtgan_base):
    path, model = cvtgan_base
    with pytest.raises(PetiteError, match="already exists"):
        save_base_model(path, model)
    apply_peft(model, "lora")
    with pytest.raises(PetiteError, match="carries PEFT spec"):
        save_base_model(tmp_path / "other.safetensors", model)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PetiteError) as info:
        load_base_model(damaged)
    _one_line(info, damaged)
    tampered = tmp_path / "tampered.safetensors"
    tensors, metadata = read_tensors(path), read_metadata(path, "petite-base-model", BASE_FORMAT_VERSION)
    # a generator weight (the discriminator is not part of the base SHA-256); safetensors returns
    # the tensors in no fixed order, so pick by sorted name
    tensors[min(k for k in tensors if k.endswith("weight") and not k.startswith("discriminator."))].add_(1.0)
    write_tensors(tampered, tensors, metadata)
    with pytest.raises(PetiteError, match="SHA-256"):
        load_base_model(tampered)
    with pytest.raises(PetiteError, match="file not found"):
        load_base_model(tmp_path / "missing.safetensors")


def test_a_file_of_format_1_is_copied_in_the_current_format(tmp_path, cvtgan_base):
    """What the zoo rebuild does with a reused model file written before checksums: the copy is in
    the current format (checksum recorded), holds the same weights and keeps the weights' SHA-256;
    a current file is copied byte for byte; a damaged one is refused, nothing written."""
    path, _ = cvtgan_base
    metadata = read_metadata(path, BASE_FORMAT, BASE_FORMAT_VERSION)
    old = tmp_path / "old.safetensors"
    version_1 = {k: v for k, v in metadata.items() if k != "tensors_sha256"}
    old.write_bytes(save(read_tensors(path), metadata={"petite": json.dumps({**version_1, "format_version": 1})}))
    assert read_metadata(old, BASE_FORMAT, BASE_FORMAT_VERSION)["format_version"] == 1
    upgraded = tmp_path / "upgraded.safetensors"
    assert copy_in_current_format(old, upgraded, BASE_FORMAT, BASE_FORMAT_VERSION) is True
    assert read_metadata(upgraded, BASE_FORMAT, BASE_FORMAT_VERSION) == metadata
    assert base_model_sha256(upgraded) == base_model_sha256(path)
    current = tmp_path / "current.safetensors"
    assert copy_in_current_format(path, current, BASE_FORMAT, BASE_FORMAT_VERSION) is False
    assert current.read_bytes() == path.read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PetiteError, match="damaged.safetensors"):
        copy_in_current_format(damaged, tmp_path / "copy.safetensors", BASE_FORMAT, BASE_FORMAT_VERSION)
    assert not (tmp_path / "copy.safetensors").exists()


def test_adapter_round_trip_stores_only_trained_tensors(tmp_path, volume, cvtgan_base):
    base_path, model = cvtgan_base
    apply_peft(model, "enc=vpt+dec=lora+bitfit")  # the paper's CvT-GAN mix: prompts, LoRA and biases
    _train_a_little(model, seed=1)
    expected = _output(model, volume)
    adapter_path = tmp_path / "scanner4.safetensors"
    save_adapter(adapter_path, model, scanner={"name": "Philips", "matrix": [128, 128, 90]},
                 training={"best_epoch": 7, "val_psnr": 31.2})
    adapter = read_adapter(adapter_path)
    assert set(adapter.tensors) == set(peft_state_dict(model)) == set(trainable_parameters(model))
    meta = adapter.metadata
    assert (meta.backbone, meta.preset, meta.format_version) == ("cvtgan", "cpu", ADAPTER_FORMAT_VERSION)
    assert meta.spec == "enc=vpt(tokens=0/8/32)+dec=lora(alpha=4,r=4)+bitfit"  # cpu preset: rank 4
    assert meta.base_sha256 == base_model_sha256(base_path)
    assert meta.scanner["matrix"] == [128, 128, 90] and meta.training["best_epoch"] == 7

    fresh = load_base_model(base_path).model
    assert load_adapter(fresh, adapter_path, expected_spec="enc=vpt+dec=lora+bitfit") == meta
    assert torch.equal(_output(fresh, volume), expected)


def test_adapter_loading_refuses_mismatches(tmp_path, cvtgan_base):
    _, model = cvtgan_base
    apply_peft(model, "lora")
    _train_a_little(model, seed=2)
    path = tmp_path / "a.safetensors"
    save_adapter(path, model)
    document, tensors = read_metadata(path, "petite-adapter", ADAPTER_FORMAT_VERSION), read_tensors(path)

    torch.manual_seed(5)
    other_base = build_backbone("cvtgan", "cpu")
    with pytest.raises(PetiteError, match="trained on base weights") as info:
        load_adapter(other_base, path)
    _one_line(info, path)
    with pytest.raises(PetiteError, match="adapter is for cvtgan/cpu, the model is unetr/cpu"):
        load_adapter(build_backbone("unetr", "cpu"), path)

    cases = {
        "preset.safetensors": ({**document, "preset": "paper"}, tensors, "adapter is for cvtgan/paper"),
        "spec.safetensors": ({**document, "spec": "lora(r=0)"}, tensors, "rank r must be"),
        "tensors.safetensors": (document, dict(list(tensors.items())[1:]), "tensors do not match spec"),
    }
    fresh = load_base_model(tmp_path.parent / tmp_path.name / "base.safetensors").model
    for name, (doc, tens, message) in cases.items():
        write_tensors(tmp_path / name, tens, doc)
        with pytest.raises(PetiteError, match=message.replace("(", r"\(")) as info:
            load_adapter(fresh, tmp_path / name)
        _one_line(info, tmp_path / name)
        assert applied_peft(fresh) is None  # a refused adapter leaves the base plain
    with pytest.raises(PetiteError, match="expected 'ssf'"):
        load_adapter(fresh, path, expected_spec="ssf")
    base_path = tmp_path / "base.safetensors"
    with pytest.raises(PetiteError, match="expected 'petite-adapter'"):
        load_adapter(fresh, base_path)


def test_old_vpt_files_with_gated_prompts_load_as_gvpt(tmp_path, volume, cvtgan_base):
    """Before vpt became the paper's joint-softmax form, ``vpt`` was the gated form: such a file
    says ``vpt`` and holds ``prompt_gate`` tensors. It is read as ``gvpt`` and computes exactly
    what it was trained to; the file is not changed, and it no longer passes for ``petite``."""
    base_path, model = cvtgan_base
    apply_peft(model, "enc=gvpt+dec=lora+bitfit")
    _train_a_little(model, seed=3)
    expected = _output(model, volume)
    current = tmp_path / "gvpt.safetensors"
    save_adapter(current, model)
    document, tensors = read_metadata(current, "petite-adapter", ADAPTER_FORMAT_VERSION), read_tensors(current)
    assert document["spec"] == "enc=gvpt(tokens=0/8/32)+dec=lora(alpha=4,r=4)+bitfit"
    assert any(name.endswith(".prompt_gate") for name in tensors)
    old = tmp_path / "old-vpt.safetensors"
    write_tensors(old, tensors, {**document, "spec": "enc=vpt(tokens=0/8/32)+dec=lora(alpha=4,r=4)+bitfit"})
    old_bytes = old.read_bytes()

    assert read_adapter(old).metadata.spec == document["spec"]
    fresh = load_base_model(base_path).model
    assert load_adapter(fresh, old).spec == document["spec"]
    assert applied_peft(fresh).spec.methods == ("bitfit", "lora", "gvpt")
    assert torch.equal(_output(fresh, volume), expected)
    with pytest.raises(PetiteError, match="expected 'enc=vpt") as info:
        load_adapter(fresh, old, expected_spec="petite")
    _one_line(info, old)
    assert old.read_bytes() == old_bytes

    remove_peft(model)  # a joint-softmax vpt file has no gates and stays vpt
    apply_peft(model, "vpt")
    _train_a_little(model, seed=4)
    save_adapter(tmp_path / "vpt.safetensors", model)
    joint = read_adapter(tmp_path / "vpt.safetensors")
    assert joint.metadata.spec == "enc=vpt(tokens=0/8/32)+dec=vpt(tokens=32/8)"
    assert all(name.endswith(".prompt_tokens") for name in joint.tensors)


def test_adapter_metadata_must_be_json(tmp_path, cvtgan_base):
    _, model = cvtgan_base
    apply_peft(model, "bitfit")
    with pytest.raises(PetiteError, match="not JSON-serialisable"):
        save_adapter(tmp_path / "x.safetensors", model, scanner={"spacing": torch.ones(3)})


def test_switching_adapters_keeps_one_base_in_memory(tmp_path, volume, cvtgan_base):
    _, model = cvtgan_base
    plain = _output(model, volume)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    specs = {"s1": "petite", "s2": "layernorm+bitfit", "s3": "enc=adapter+dec=ssf"}
    outputs = {}
    for seed, (name, spec) in enumerate(specs.items()):
        apply_peft(model, spec)
        _train_a_little(model, seed)
        outputs[name] = _output(model, volume)
        save_adapter(tmp_path / f"{name}.safetensors", model)
        remove_peft(model)

    switcher = AdapterSwitcher(model)
    assert [switcher.add(tmp_path / f"{name}.safetensors") for name in specs] == list(specs)
    assert switcher.active is None and torch.equal(_output(model, volume), plain)
    for name in ["s2", "s1", "s3", "s2"]:
        switcher.activate(name)
        assert torch.equal(_output(model, volume), outputs[name]), name
    switcher.activate(None)
    assert torch.equal(_output(model, volume), plain)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base_state.items())  # BitFit/LN restored
    with pytest.raises(PetiteError, match="no adapter named 'x'"):
        switcher.activate("x")
    with pytest.raises(PetiteError, match="already added"):
        switcher.add(tmp_path / "s1.safetensors")
