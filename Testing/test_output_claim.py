"""The mechanisms behind every command's output checks: identity rule, probes, locks, write-all."""
import json
import os
import subprocess
import sys

import pytest

from PETITELib.errors import PetiteError
from PETITELib.output_claim import claim_outputs, write_all
from PETITELib.output_lock import OutputLock, _remove_stale, lock_file, process_alive
from PETITELib.output_probe import prepare_output
from PETITELib.path_identity import check_distinct, same_file


def test_same_file_follows_links_dots_and_hard_links(tmp_path):
    source = tmp_path / "a.nii.gz"
    source.write_bytes(b"x")
    (tmp_path / "link").symlink_to(source)
    os.link(source, tmp_path / "hard.nii.gz")
    assert same_file(source, tmp_path / "link")
    assert same_file(source, tmp_path / "nowhere" / ".." / "a.nii.gz")
    assert same_file(source, tmp_path / "hard.nii.gz")
    assert not same_file(source, tmp_path / "b.nii.gz")


def test_identity_rule_names_both_paths_and_options(tmp_path):
    cohort = tmp_path / "cohort"
    (cohort / "sub-1").mkdir(parents=True)
    short = cohort / "sub-1" / "short.nii.gz"
    short.write_bytes(b"x")
    with pytest.raises(PetiteError, match=r"short.nii.gz: the output \(-o\) is the input .* \(INPUT\)"):
        check_distinct({"-o": short}, {"INPUT": short})
    with pytest.raises(PetiteError, match="two outputs are one file"):
        check_distinct({"--out": tmp_path / "r.md", "--out (markdown)": tmp_path / "r.md"}, {})
    with pytest.raises(PetiteError, match="holds the input"):
        check_distinct({}, {"cohort": short}, {"checkpoint": cohort})
    check_distinct({"-o": tmp_path / "out.nii.gz", "x": None}, {"INPUT": short, "--adapter": None})


def test_probe_creates_missing_folders_and_the_claim_removes_them_on_failure(tmp_path):
    output = tmp_path / "new" / "deeper" / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with claim_outputs({"-o": output}):
            assert (tmp_path / "new" / "deeper").is_dir()
            assert lock_file(output).exists()
            raise RuntimeError("the work failed")
    assert sorted(os.listdir(tmp_path)) == []
    with claim_outputs({"-o": output}):
        output.write_bytes(b"done")
    assert sorted(p.name for p in output.parent.iterdir()) == ["out.nii.gz"]  # lock gone, output kept


def test_probe_refuses_a_folder_where_a_file_is_due_and_the_reverse(tmp_path):
    (tmp_path / "dir.nii.gz").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PetiteError, match="must be a file"):
        prepare_output(tmp_path / "dir.nii.gz")
    with pytest.raises(PetiteError, match="must be a folder"):
        prepare_output(tmp_path / "file", folder=True)
    with pytest.raises(PetiteError, match="is a file, not a folder"):
        prepare_output(tmp_path / "file" / "sub" / "out.nii.gz")


def test_a_lock_is_exclusive_within_one_process_too(tmp_path):
    target = tmp_path / "out.nii.gz"
    with OutputLock(target, "-o"):
        with pytest.raises(PetiteError, match=f"-o is in use by another PETITE command \\(pid {os.getpid()}"):
            OutputLock(target, "-o").acquire()
    with OutputLock(target):  # released: free again
        pass
    assert not lock_file(target).exists()


def test_process_alive_knows_this_process_and_a_finished_one():
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    assert process_alive(os.getpid())
    assert not process_alive(int(finished.stdout))


def test_a_stale_lock_is_removed_but_a_fresh_one_made_meanwhile_stays(tmp_path):
    path = lock_file(tmp_path / "out.nii.gz")
    stale = {"pid": 999999, "host": "h", "token": "old", "started": 0}
    fresh = {"pid": os.getpid(), "host": "h", "token": "new", "started": 1}
    path.write_text(json.dumps(fresh))  # judged stale as `stale`, but replaced before the removal
    _remove_stale(path, stale)
    assert json.loads(path.read_text())["token"] == "new"
    path.write_text(json.dumps(stale))
    _remove_stale(path, stale)
    assert sorted(os.listdir(tmp_path)) == []


def test_unix_only_modules_are_not_used():
    source = (OutputLock.__module__.replace(".", "/") + ".py")
    text = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), source)).read()
    assert "fcntl" not in text.replace("No ``fcntl``", "")


def test_write_all_leaves_all_files_or_none(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.md"

    def failing():
        first.write_text("written")
        raise PetiteError(f"{second}: cannot write (No space left on device)")

    with pytest.raises(PetiteError):
        write_all(failing, [first, second])
    assert not first.exists() and not second.exists()
    write_all(lambda: (first.write_text("1"), second.write_text("2")), [first, second])
    assert first.read_text() == "1" and second.read_text() == "2"
