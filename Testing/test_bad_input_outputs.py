"""Issue 14, outputs: no output may be an input or another output; one command per output at a
time (locks); every output location is tried before the work starts; failed writes leave nothing.

Each refusal is checked by :func:`bad_input_support.refused`: exit 2, one line on stderr naming
the file or option, no traceback, inputs byte-identical, no output, partial, probe or lock file.
"""
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from bad_input_support import chattr, cohort_files, listing, refused, sha256, write_cohort, write_volume
from PETITELib.backbones import build_backbone
from PETITELib.cli import main
from PETITELib.errors import PetiteError
from PETITELib.peft import save_base_model

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

TINY = ["--epochs", "1", "--batch-size", "2", "--crops-per-subject", "2", "--val-subjects", "1",
        "--val-every", "1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    return {"short": write_volume(folder / "short.nii.gz"), "long": write_volume(folder / "long.nii.gz", which="long")}


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """A 3-subject phantom cohort and an untrained CvT-GAN base (fine-tuning on it takes seconds)."""
    folder = tmp_path_factory.mktemp("training")
    torch.manual_seed(0)
    base = folder / "base.safetensors"
    save_base_model(base, build_backbone("cvtgan", "cpu"))
    return {"cohort": write_cohort(folder / "cohort"), "base": base}


def _reconstruct(scans, output, *extra):
    return ["reconstruct", str(scans["short"]), "-o", str(output), "--device", "cpu", "--quiet", *extra]


# --- no output may resolve to an input or to another output (with or without --overwrite) -----------

def test_reconstruct_onto_its_input_is_refused_even_with_overwrite(scans, tmp_path, capsys):
    source = tmp_path / "x.nii.gz"
    shutil.copyfile(scans["short"], source)
    link = tmp_path / "link.nii.gz"
    link.symlink_to(source)
    for output in (source, link, tmp_path / "sub" / ".." / "x.nii.gz"):
        argv = ["reconstruct", str(source), "-o", str(output), "--device", "cpu", "--quiet", "--overwrite"]
        refused(capsys, argv, ["x.nii.gz", "link.nii.gz"], inputs=[source], folders=[tmp_path])
        assert link.is_symlink()


def test_finetune_onto_its_base_is_refused(training, tmp_path, capsys):
    base = tmp_path / "B.safetensors"
    shutil.copyfile(training["base"], base)
    argv = ["finetune", "--base", str(base), "--cohort", str(training["cohort"]), "--out", str(base),
            "--overwrite", *TINY]
    refused(capsys, argv, [str(base)], inputs=[base, training["cohort"]], folders=[tmp_path])


def test_reference_that_is_also_an_error_map_is_refused(scans, tmp_path, capsys):
    reference = tmp_path / "r_error.nii.gz"  # what `-o r.nii.gz --reference ...` writes as its error map
    shutil.copyfile(scans["long"], reference)
    argv = _reconstruct(scans, tmp_path / "r.nii.gz", "--reference", str(reference), "--overwrite")
    refused(capsys, argv, ["r_error.nii.gz"], inputs=[reference, scans["short"]], folders=[tmp_path])


def test_evaluate_outputs_that_are_one_file_or_a_cohort_file_are_refused(training, tmp_path, capsys):
    cohort = tmp_path / "cohort"
    shutil.copytree(training["cohort"], cohort)
    (cohort / "scanner.json").write_text('{"id": 4}')
    base = ["evaluate", "--cohort", str(cohort), "--base", str(training["base"]), "--device", "cpu", "--quiet"]
    # RESULT.md is both the JSON (--out) and the markdown written beside it
    refused(capsys, base + ["--out", str(tmp_path / "RESULT.md")], ["RESULT.md"], inputs=[cohort],
            folders=[tmp_path])
    refused(capsys, base + ["--out", str(cohort / "scanner.json"), "--overwrite"], ["scanner.json"],
            inputs=[cohort], folders=[tmp_path])


# --- one command per output: exclusive locks ------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from PETITELib.output_lock import OutputLock
with OutputLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _lock_holder(path):
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_an_output_in_use_by_another_process_is_refused_naming_its_pid(scans, tmp_path, capsys):
    output = tmp_path / "out.nii.gz"
    holder = _lock_holder(output)
    try:
        before = listing(tmp_path)
        line = refused(capsys, _reconstruct(scans, output), [str(output)], inputs=[scans["short"]])
        assert f"pid {holder.pid}" in line and listing(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(scans, tmp_path, capsys):
    output = tmp_path / "out.nii.gz"
    holder = _lock_holder(output)
    holder.kill()  # kill -9: the lock file stays behind
    holder.wait()
    assert len(listing(tmp_path)) == 1
    assert main(_reconstruct(scans, output)) == 0
    assert listing(tmp_path) == {"out.nii.gz"}  # the stale lock was taken over and released


def test_two_finetune_runs_to_one_output_the_second_is_refused(training, tmp_path, capsys):
    out = tmp_path / "a.safetensors"
    long_run = ["--epochs", "200", "--batch-size", "2", "--crops-per-subject", "2", "--val-subjects", "1",
                "--val-every", "50", "--device", "cpu", "--quiet"]
    first = subprocess.Popen([sys.executable, "-m", "PETITELib.cli", "finetune", "--base", str(training["base"]),
                              "--cohort", str(training["cohort"]), "--out", str(out), *long_run],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not any("lock" in name or name.endswith(".ckpt") for name in listing(tmp_path)):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        argv = ["finetune", "--base", str(training["base"]), "--cohort", str(training["cohort"]), "--out", str(out),
                *TINY]
        line = refused(capsys, argv, [str(out)], inputs=[training["base"], training["cohort"]])
        assert f"pid {first.pid}" in line
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


# --- every output location is tried before the work starts ------------------------------------------------

def test_immutable_output_folder_is_refused_before_any_work(scans, training, tmp_path, capsys):
    folder = tmp_path / "immutable"
    folder.mkdir()
    chattr(folder, "+i")
    try:
        tic = time.perf_counter()
        refused(capsys, _reconstruct(scans, folder / "out.nii.gz"), ["immutable"], inputs=[scans["short"]],
                folders=[tmp_path])
        refused(capsys, ["finetune", "--base", str(training["base"]), "--cohort", str(training["cohort"]),
                         "--out", str(folder / "a.safetensors"), *TINY], ["immutable"],
                inputs=[training["base"], training["cohort"]], folders=[tmp_path])
        assert time.perf_counter() - tic < 20  # refused up front, not after a reconstruction and a training
    finally:
        chattr(folder, "-i")


def test_immutable_existing_output_with_overwrite_is_refused(scans, tmp_path, capsys):
    output = tmp_path / "out.nii.gz"
    output.write_bytes(b"old")
    chattr(output, "+i")
    try:
        refused(capsys, _reconstruct(scans, output, "--overwrite"), ["out.nii.gz"],
                inputs=[scans["short"], output], folders=[tmp_path])
    finally:
        chattr(output, "-i")


UNWRITABLE = {  # case: (output below tmp_path or absolute, a name the error line must contain)
    "under-proc-folder": ("/proc/petite-test/out.nii.gz", "/proc/petite-test"),
    "under-proc": ("/proc/out.nii.gz", "/proc/out.nii.gz"),
    "below-a-file": ("notes.txt/out.nii.gz", "notes.txt"),
    "onto-a-folder": ("folder.nii.gz", "folder.nii.gz"),
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_output_under_proc_or_below_a_file_or_onto_a_folder_is_refused(case, scans, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder")
    (tmp_path / "folder.nii.gz").mkdir()
    output, name = UNWRITABLE[case]
    refused(capsys, _reconstruct(scans, tmp_path / output, "--overwrite"), [name], inputs=[scans["short"], a_file],
            folders=[tmp_path])


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte (skipped where mounting is not allowed)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): full-disk case not tested")
    try:
        descriptor = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(descriptor, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(descriptor)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_output_on_a_full_disk_is_refused_before_any_work(scans, full_disk, capsys):
    refused(capsys, _reconstruct(scans, full_disk / "out.nii.gz"), [str(full_disk)], inputs=[scans["short"]],
            folders=[full_disk])


def test_a_write_that_fails_midway_leaves_no_partial_file_and_training_keeps_its_checkpoint(full_disk):
    from PETITELib.engine.checkpoint import load_checkpoint, save_checkpoint
    from PETITELib.nifti_io import atomic_write_bytes

    (full_disk / "filler").unlink()
    (full_disk / "filler").write_bytes(b"\0" * 40 * 1024)  # 24 KiB left
    with pytest.raises(PetiteError) as info:
        atomic_write_bytes(full_disk / "big.bin", b"\1" * 64 * 1024)
    assert "big.bin" in str(info.value) and "\n" not in str(info.value)
    assert listing(full_disk) == {"filler"}
    folder = full_disk / "run.ckpt"
    save_checkpoint(folder, 1, {"w": torch.ones(100)}, {"note": "small"})
    with pytest.raises(PetiteError):
        save_checkpoint(folder, 2, {"w": torch.ones(16 * 1024)}, {"note": "too big"})
    tensors, state = load_checkpoint(folder)
    assert state["epoch"] == 1 and torch.equal(tensors["w"], torch.ones(100))
    assert not [name for name in listing(folder) if name.endswith(".tmp")]


def test_simulate_into_proc_is_refused(tmp_path, capsys):
    refused(capsys, ["simulate", "--out", "/proc/petite-sim", "--scanners", "4", "--subjects", "1", "--mode", "fast"],
            ["/proc/petite-sim"])


def test_simulate_overwrite_through_a_linked_scanner_folder_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    argv = ["simulate", "--scanners", "4", "--subjects", "1", "--mode", "fast"]
    assert main(argv + ["--out", str(elsewhere)]) == 0
    out = tmp_path / "sim"
    out.mkdir()
    (out / "scanner4").symlink_to(elsewhere / "scanner4", target_is_directory=True)
    refused(capsys, argv + ["--out", str(out), "--overwrite"], ["scanner4"], inputs=[elsewhere / "scanner4"],
            folders=[out])


def test_inputs_are_never_modified_by_a_successful_run(scans, training, tmp_path, capsys):
    """The counterpart of every refusal above: a normal run leaves its inputs alone and no debris."""
    hashes = {p: sha256(p) for p in [scans["short"], scans["long"], *cohort_files(training["cohort"])]}
    assert main(_reconstruct(scans, tmp_path / "r.nii.gz", "--reference", str(scans["long"]))) == 0
    assert listing(tmp_path) == {"r.nii.gz", "r_metrics.json", "r_error.nii.gz", "r_abs_error.nii.gz",
                                 "r_comparison.png"}
    assert all(sha256(p) == digest for p, digest in hashes.items())


def test_every_command_tries_its_outputs_before_any_work(scans, training, tmp_path, capsys):
    cohort, base = str(training["cohort"]), str(training["base"])
    commands = {
        "reconstruct": ["reconstruct", str(scans["short"]), "-o", "/proc/petite/out.nii.gz", "--quiet"],
        "evaluate": ["evaluate", "--cohort", cohort, "--base", base, "--out", "/proc/petite/r.json", "--quiet"],
        "pretrain": ["pretrain", "--cohort", cohort, "--backbone", "cvtgan", "--out", "/proc/petite/b.safetensors",
                     *TINY],
        "finetune": ["finetune", "--cohort", cohort, "--base", base, "--out", "/proc/petite/a.safetensors", *TINY],
        "simulate": ["simulate", "--out", "/proc/petite", "--scanners", "4", "--subjects", "1", "--mode", "fast"],
        "demo": ["demo", "--out", "/proc/petite", "--quiet"],
        "bench": ["bench", "--backbone", "unetr", "--quick", "--out", "/proc/petite/r.json", "--quiet"],
        "zoo rebuild": ["zoo", "rebuild", "--work", "/proc/petite", "--out", str(tmp_path / "zoo"), "--quiet"],
    }
    for name, argv in commands.items():
        tic = time.perf_counter()
        refused(capsys, argv, ["/proc/petite"], inputs=[scans["short"], training["cohort"], training["base"]],
                folders=[tmp_path])
        assert time.perf_counter() - tic < 60, f"{name} worked before refusing its output"
