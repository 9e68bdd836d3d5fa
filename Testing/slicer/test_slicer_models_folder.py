"""The user's models folder: ~/.PETITE by default, outside Slicer's cache; models saved under the old
cache folder are moved there once."""
import pytest

pytestmark = pytest.mark.slicer


def test_default_models_folder_is_in_the_home_folder_not_the_cache(petite, monkeypatch):
    monkeypatch.delenv("PETITE_MODELS_DIR", raising=False)
    assert petite.PETITELogic().modelsDir == petite.pathlib.Path.home() / ".PETITE"
    monkeypatch.setenv("PETITE_MODELS_DIR", "/somewhere/else")
    assert str(petite.PETITELogic().modelsDir) == "/somewhere/else"


def test_models_under_the_old_cache_folder_are_moved_once(petite, tmp_path):
    old = tmp_path / "cache" / "PETITE"
    for sub, name in (("base", "mine.safetensors"), ("adapters", "site-a.safetensors"),
                      ("adapters", "taken.safetensors")):
        (old / sub).mkdir(parents=True, exist_ok=True)
        (old / sub / name).write_bytes(name.encode())
    (old / "sample-data").mkdir()
    (old / "sample-data" / "x.nii.gz").write_bytes(b"cache")
    logic = petite.PETITELogic(modelsDir=tmp_path / "home" / ".PETITE")
    logic.adaptersDir.mkdir(parents=True)
    (logic.adaptersDir / "taken.safetensors").write_bytes(b"the user's own")

    moved = logic.migrateOldModels(old)
    assert sorted(p.name for p in moved) == ["mine.safetensors", "site-a.safetensors"]
    assert (logic.baseModelsDir / "mine.safetensors").read_bytes() == b"mine.safetensors"
    assert (logic.adaptersDir / "site-a.safetensors").read_bytes() == b"site-a.safetensors"
    assert (logic.adaptersDir / "taken.safetensors").read_bytes() == b"the user's own"  # never overwritten
    assert (old / "adapters" / "taken.safetensors").exists()  # left where it was (and logged)
    assert (old / "sample-data" / "x.nii.gz").exists()  # only models move
    assert logic.migrateOldModels(old) == []  # once
    assert logic.migrateOldModels(tmp_path / "nothing-here") == []
