"""Atomic writes: a process killed at any point leaves the old file or the new one, never a partial one."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import files
from bench.errors import BenchError
from bench.files import atomic_torch_save, atomic_write, atomic_write_text, exclusive
from tests.conftest import ROOT

KILLED_BEFORE_RENAME = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from bench import files

    def killed(source, target):  # the process dies after the new content is written, before the rename
        os.kill(os.getpid(), signal.SIGKILL)

    files.os.replace = killed
    files.atomic_write_text(Path(sys.argv[1]), "new content " * 10_000)
""")


def test_a_process_killed_between_write_and_rename_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old content")
    killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_RENAME, str(path)], cwd=ROOT, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert path.read_text() == "old content"
    leftover = [found.name for found in tmp_path.iterdir() if found != path]
    assert len(leftover) == 1 and leftover[0].startswith(".metrics.json.")  # the new content, under a hidden name
    atomic_write_text(path, "new")  # a later write is not disturbed by it
    assert path.read_text() == "new"


def test_atomic_writes_flush_the_file_and_the_rename_to_disk(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_torch_save({"weights": torch.ones(3)}, tmp_path / "checkpoint.pt")
    assert len(synced) == 2 and synced[0].endswith(".tmp") and synced[1] == str(tmp_path)  # file, then folder
    assert torch.equal(torch.load(tmp_path / "checkpoint.pt")["weights"], torch.ones(3))


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "results.csv"
    atomic_write_text(path, "old")

    def failing(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_text() == "old" and [found.name for found in tmp_path.iterdir()] == ["results.csv"]



HOLD_AND_RECORD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bench.files import exclusive

    lock, log, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    with exclusive(lock):
        with open(log, "a") as handle:
            handle.write(f"{name} in\\n")
        time.sleep(1.0)
        with open(log, "a") as handle:
            handle.write(f"{name} out\\n")
""")


def test_where_flock_fails_lock_files_still_serialise_two_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_LOCKS", "file")  # as on Lustre without -o flock, or NFS mounted nolock
    lock, log = tmp_path / ".cache.pt.lock", tmp_path / "log"
    processes = [subprocess.Popen([sys.executable, "-c", HOLD_AND_RECORD, str(lock), str(log), name], cwd=ROOT)
                 for name in ("a", "b")]
    assert [process.wait(timeout=60) for process in processes] == [0, 0]
    entries = log.read_text().split("\n")[:4]
    assert entries in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])  # never interleaved
    assert not lock.with_name(lock.name + ".owner").exists()  # released


def test_a_refused_flock_falls_back_to_lock_files(tmp_path, monkeypatch):
    def refused(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files.fcntl, "flock", refused)
    lock = tmp_path / ".oracle.lock"
    with exclusive(lock) as held:
        assert held and lock.with_name(lock.name + ".owner").is_file()
        with exclusive(lock, wait=False) as again:
            assert again is False  # held by this very block
    assert not lock.with_name(lock.name + ".owner").exists()


def test_a_stale_lock_file_of_a_dead_process_or_a_silent_host_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_LOCKS", "file")
    lock = tmp_path / ".cell.lock"
    owner = lock.with_name(lock.name + ".owner")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0}))
    with exclusive(lock, wait=False) as held:
        assert held  # its owner's process is gone
    owner.write_text(json.dumps({"host": "another-node", "pid": 1, "since": 0}))
    with exclusive(lock, wait=False) as held:
        assert not held  # another node's process may be alive: its heartbeat is recent
    old = time.time() - files.STALE_SECONDS - 1
    os.utime(owner, (old, old))
    with exclusive(lock, wait=False) as held:
        assert held  # no heartbeat for STALE_SECONDS: that node is gone


class CreatesAFile:
    """A pickle that, when loaded, calls `open(path, "w")`: the simplest code a malicious checkpoint could run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys):
    from bench.cli import main
    from bench.external import ExternalModel, load_model
    from bench.files import UntrustedFile, load_tensors

    created = tmp_path / "created-by-the-pickle"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"weight": torch.ones(2)}, "payload": CreatesAFile(created)}, evil)
    assert not created.exists()
    with pytest.raises(UntrustedFile):
        load_tensors(evil)
    with pytest.raises(BenchError, match="--trust-checkpoint"):
        load_model(ExternalModel("bench.ccvae:CCVAE", str(evil), "", {}), None, torch.device("cpu"))
    assert main(["eval", "--model", "bench.ccvae:CCVAE", "--checkpoint", str(evil), "--dataset", "synthfaces",
                 "--preset", "smoke", "--runs", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err.strip()
    assert "would run code" in error and len(error.splitlines()) == 1, error
    assert not created.exists()  # nothing in the file ran
    load_tensors(evil, trust=True)  # trusted: it runs, which is what the flag says
    assert created.exists()


def test_this_suites_checkpoints_and_state_dicts_load_without_running_code(tmp_path):
    """The trainer's checkpoint (model and optimiser state, RNG state, the log's strings and numbers) passes the
    restricted unpickler."""
    from bench.files import load_tensors
    from bench.train import _save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    log = [{"epoch": 1, "sup_loss": 1.5, "unsup_loss": "", "valid_accuracy": 0.5, "images_per_s": 10.0,
            "seconds": 1.0}]
    _save_checkpoint(tmp_path / "checkpoint.pt", model, optimizer, 1, 0, log)
    state = load_tensors(tmp_path / "checkpoint.pt")
    assert state["log"] == log and state["epoch"] == 1
    assert torch.equal(state["model"]["weight"], model.state_dict()["weight"])
    restored = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    restored.load_state_dict(state["optimizer"])
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    assert set(load_tensors(tmp_path / "weights.pt")) == {"weight", "bias"}


def test_corrupt_bytes_are_called_unreadable_not_unsafe_and_torchs_advice_is_not_passed_on(tmp_path, capsys):
    from bench.cli import main
    from bench.files import UnreadableFile, load_tensors

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    truncated = tmp_path / "truncated.pt"
    torch.save({"weight": torch.ones(100)}, tmp_path / "whole.pt")
    truncated.write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
    for path in (garbage, truncated):
        with pytest.raises(UnreadableFile, match="not a checkpoint torch can read"):
            load_tensors(path)
    assert main(["eval", "--model", "bench.ccvae:CCVAE", "--checkpoint", str(garbage), "--dataset", "synthfaces",
                 "--preset", "smoke", "--runs", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err.strip()
    assert "not a checkpoint torch can read" in error and len(error.splitlines()) == 1, error
    assert "trust-checkpoint" not in error and "weights_only" not in error


def test_a_runs_own_corrupt_checkpoint_says_so_in_one_line(tmp_path):
    from bench.config import make_config
    from bench.data import load
    from bench.train import train

    config = make_config("ccvae", "synthfaces", 1.0, 0, "smoke", epochs=1, model_options={"style_dim": 4})
    data = load("synthfaces", cache_dir=str(tmp_path / "cache"), options=config.dataset_options)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x80\x02 not a checkpoint" * 50)
    with pytest.raises(BenchError, match="not a checkpoint of this run") as raised:
        train(config, data, run, torch.device("cpu"), show_progress=False)
    assert "weights_only" not in str(raised.value) and "Re-running" not in str(raised.value)
