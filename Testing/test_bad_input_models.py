"""Issue 14, model files: every file PETITE writes records the SHA-256 of its tensor data, and every
load checks it, the tensors' dtype, shape and finiteness, and the metadata's types and version.

Damaged copies of the shipped scanner-4 adapter and base are given to ``petite reconstruct`` and
``petite evaluate``; each must be refused with one line naming the file, before any output exists.
"""
import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from bad_input_support import refused, write_cohort, write_volume
from PETITELib.backbones import build_backbone, build_discriminator
from PETITELib.cli import main
from PETITELib.peft import apply_peft, save_adapter, save_base_model
from PETITELib.peft.model import tensors_sha256
from PETITELib.peft.safetensors_io import METADATA_KEY
from PETITELib.zoo import load_manifest

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _shipped(name):
    return load_manifest().entry(name).path


def _document(path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[METADATA_KEY])


def rewrite(source, target, tensors=None, metadata=None, header=None):
    """Copy a PETITE safetensors file with changed tensors (``tensors(dict)`` edits them; the recorded
    SHA-256s are updated so that only the change itself is at fault),
    changed metadata (``metadata(document) -> document``) or a raw metadata string ``header``."""
    document, contents = _document(source), load_file(str(source))
    if tensors is not None:
        tensors(contents)
        if "tensors_sha256" in document:
            document["tensors_sha256"] = tensors_sha256(contents)
        if document.get("format") == "petite-base-model":  # base files also hash their generator
            document["base_sha256"] = tensors_sha256({k: v for k, v in contents.items()
                                                      if not k.startswith("discriminator.")})
    if metadata is not None:
        document = metadata(document)
    target.write_bytes(save(contents, metadata={METADATA_KEY: header if header is not None else json.dumps(document)}))
    return target


def _set_first(contents, value):
    name = sorted(contents)[0]
    contents[name] = contents[name].clone()
    contents[name].view(-1)[0] = value


def _as_int32(contents):
    name = sorted(contents)[0]
    contents[name] = (contents[name] * 1000).to(torch.int32)


def _flip_a_data_byte(source, target):
    data = bytearray(source.read_bytes())
    data[-1000] ^= 0x40  # inside the last tensor's data
    target.write_bytes(bytes(data))
    return target


def _with(key, value):
    return lambda document: {**document, key: value}


ADAPTER_DAMAGE = {
    "flipped-bytes": lambda s, t: _flip_a_data_byte(s, t),
    "nan-tensor": lambda s, t: rewrite(s, t, tensors=lambda c: _set_first(c, float("nan"))),
    "inf-tensor": lambda s, t: rewrite(s, t, tensors=lambda c: _set_first(c, float("inf"))),
    "int32-tensor": lambda s, t: rewrite(s, t, tensors=_as_int32),
    "version-0": lambda s, t: rewrite(s, t, metadata=_with("format_version", 0)),
    "version-minus-5": lambda s, t: rewrite(s, t, metadata=_with("format_version", -5)),
    "version-true": lambda s, t: rewrite(s, t, metadata=_with("format_version", True)),
    "metadata-list": lambda s, t: rewrite(s, t, header=json.dumps([1, 2, 3])),
    "base-sha-integer": lambda s, t: rewrite(s, t, metadata=_with("base_sha256", 12345)),
    "scanner-list": lambda s, t: rewrite(s, t, metadata=_with("scanner", ["not", "a", "dict"])),
    "tensor-sha-missing": lambda s, t: rewrite(s, t, metadata=lambda d: {k: v for k, v in d.items()
                                                                         if k != "tensors_sha256"}),
}


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    return {"short": write_volume(folder / "short.nii.gz"), "cohort": write_cohort(folder / "cohort", 2)}


@pytest.mark.parametrize("damage", sorted(ADAPTER_DAMAGE))
def test_damaged_adapter_is_refused_by_reconstruct(damage, scans, tmp_path, capsys):
    adapter = ADAPTER_DAMAGE[damage](_shipped("scanner4"), tmp_path / f"{damage}.safetensors")
    argv = ["reconstruct", str(scans["short"]), "-o", str(tmp_path / "out.nii.gz"), "--adapter", str(adapter),
            "--device", "cpu", "--quiet"]
    refused(capsys, argv, [adapter.name], inputs=[adapter, scans["short"]], folders=[tmp_path])


def test_adapter_with_nan_is_refused_by_evaluate_and_no_nan_is_written(scans, tmp_path, capsys):
    adapter = ADAPTER_DAMAGE["nan-tensor"](_shipped("scanner4"), tmp_path / "nan.safetensors")
    argv = ["evaluate", "--cohort", str(scans["cohort"]), "--adapter", str(adapter), "--out",
            str(tmp_path / "result.json"), "--device", "cpu", "--quiet"]
    refused(capsys, argv, [adapter.name], inputs=[adapter, scans["cohort"]], folders=[tmp_path])


@pytest.mark.parametrize("damage", ["flipped-bytes", "version-true", "metadata-list", "tensor-sha-missing"])
def test_damaged_base_is_refused(damage, scans, tmp_path, capsys):
    base = ADAPTER_DAMAGE[damage](_shipped("base"), tmp_path / f"{damage}.safetensors")
    argv = ["reconstruct", str(scans["short"]), "-o", str(tmp_path / "out.nii.gz"), "--base", str(base),
            "--device", "cpu", "--quiet"]
    refused(capsys, argv, [base.name], inputs=[base, scans["short"]], folders=[tmp_path])


def _as_float64(contents):
    name = sorted(contents)[0]
    contents[name] = contents[name].double()


def test_base_with_float64_where_float32_is_due_is_refused(tmp_path, capsys, scans):
    torch.manual_seed(0)
    base = tmp_path / "b.safetensors"
    save_base_model(base, build_backbone("cvtgan", "cpu"))
    bad = rewrite(base, tmp_path / "f64.safetensors", tensors=_as_float64)
    argv = ["reconstruct", str(scans["short"]), "-o", str(tmp_path / "out.nii.gz"), "--base", str(bad),
            "--device", "cpu", "--quiet"]
    refused(capsys, argv, [bad.name], inputs=[bad], folders=[tmp_path])


def test_every_model_file_petite_writes_records_the_sha256_of_its_tensors(tmp_path):
    torch.manual_seed(0)
    model = build_backbone("cvtgan", "cpu")
    save_base_model(tmp_path / "base.safetensors", model, build_discriminator("cvtgan", "cpu"))
    apply_peft(model, "petite")
    save_adapter(tmp_path / "adapter.safetensors", model)
    for name in ("base.safetensors", "adapter.safetensors"):
        document = _document(tmp_path / name)
        assert document["tensors_sha256"] == tensors_sha256(load_file(str(tmp_path / name)))
        assert document["format_version"] == 2


def test_shipped_models_carry_the_checksum_and_match_the_manifest(capsys):
    manifest = load_manifest()
    for entry in manifest.entries:
        document = _document(entry.path)
        assert document["tensors_sha256"] == tensors_sha256(load_file(str(entry.path))), entry.name
    assert main(["zoo", "list", "--verify"]) == 0
    assert "SHA-256 verified" in capsys.readouterr().out


def test_a_good_copy_of_a_shipped_adapter_still_works(scans, tmp_path):
    adapter = tmp_path / "copy.safetensors"
    shutil.copyfile(_shipped("scanner4"), adapter)
    assert main(["reconstruct", str(scans["short"]), "-o", str(tmp_path / "out.nii.gz"), "--adapter", str(adapter),
                 "--device", "cpu", "--quiet"]) == 0


def _as_version_1(document):
    """The metadata an earlier release wrote: format version 1, no tensors_sha256."""
    return {**{k: v for k, v in document.items() if k != "tensors_sha256"}, "format_version": 1}


def test_an_adapter_of_an_earlier_release_still_works_with_its_other_checks(scans, tmp_path, capsys):
    old = rewrite(_shipped("scanner4"), tmp_path / "old.safetensors", metadata=_as_version_1)
    out = tmp_path / "out.nii.gz"
    assert main(["reconstruct", str(scans["short"]), "-o", str(out), "--adapter", str(old),
                 "--device", "cpu", "--quiet"]) == 0 and out.exists()
    broken = rewrite(old, tmp_path / "old-nan.safetensors", tensors=lambda c: _set_first(c, float("nan")))
    argv = ["reconstruct", str(scans["short"]), "-o", str(tmp_path / "nan.nii.gz"), "--adapter", str(broken),
            "--device", "cpu", "--quiet"]
    line = refused(capsys, argv, ["old-nan.safetensors"], inputs=[broken, scans["short"]])
    assert "NaN" in line and not (tmp_path / "nan.nii.gz").exists()
