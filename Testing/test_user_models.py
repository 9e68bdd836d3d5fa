"""PETITELib.zoo.selection with a user's models folder (the Slicer module's ~/.PETITE)."""
import shutil
from pathlib import Path

import pytest

from PETITELib.errors import PetiteError
from PETITELib.zoo import available_adapters, choose_models, load_manifest, user_models

ZOO = Path(__file__).resolve().parents[1] / "Resources" / "Models"


@pytest.fixture
def folder(tmp_path):
    manifest = load_manifest(ZOO)
    (tmp_path / "adapters").mkdir()
    shutil.copyfile(manifest.entry("scanner4").path, tmp_path / "adapters" / "site-4.safetensors")
    (tmp_path / "adapters" / "junk.safetensors").write_bytes(b"junk")
    return tmp_path


def test_user_models_read_metadata_only(folder):
    entries = {e.name: e for e in user_models(folder)}
    assert sorted(entries) == ["junk", "site-4"]
    site = entries["site-4"]
    assert site.kind == "adapter" and site.record["source"] == "user" and site.sha256 == ""
    assert site.scanner["matrix"] == [128, 128, 90] and site.record["base_sha256"]
    assert "not a PETITE" in entries["junk"].record["problem"]
    assert user_models(folder / "missing") == []


def test_a_users_adapter_comes_before_the_shipped_one_and_names_resolve_to_it(folder):
    auto = choose_models(None, "auto", shape=(128, 128, 90), spacing=(2.0, 2.0, 2.0), user=folder)
    assert (auto.adapter_name, auto.adapter_shipped) == ("site-4", False)
    assert "simulated" not in auto.note
    shipped = choose_models(None, "auto", shape=(128, 128, 90), spacing=(2.0, 2.0, 2.0))
    assert shipped.adapter_shipped and "trained on simulated scans only" in shipped.note
    assert choose_models(None, "site-4", user=folder).adapter == folder / "adapters" / "site-4.safetensors"
    with pytest.raises(PetiteError, match="junk.safetensors: not a PETITE"):
        choose_models(None, "junk", user=folder)
    names = [e.name for e in available_adapters(user=folder)]
    assert names[:2] == ["junk", "site-4"] and "scanner4" in names


def test_without_verify_nothing_is_hashed(folder, monkeypatch):
    import PETITELib.zoo.selection as selection

    def no_hashing(entry):
        raise AssertionError("hashed")

    monkeypatch.setattr(selection, "verify_entry", no_hashing)
    choice = choose_models(None, "scanner4", user=folder, verify=False)
    assert choice.adapter.name.endswith("scanner4-petite.safetensors") and choice.adapter_shipped
    with pytest.raises(AssertionError, match="hashed"):
        choose_models(None, "scanner4", user=folder)
