"""Ctrl-C stops a local sweep: every process gone within seconds, nothing half-written, one line saying how to
resume, exit 130; the same command then finishes without retraining what had finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
STOPPED_WITHIN = 20.0  # seconds from Ctrl-C until every process of the sweep has ended
GRID = ["run", "--preset", "smoke", "--datasets", "synthfaces", "--models", "ccvae,m2", "--fs", "0.2,1",
        "--jobs", "2"]


def as_in_a_terminal() -> None:
    """In the child before exec: SIGINT handled as in a terminal's foreground job. A shell without job control
    starts background commands with SIGINT ignored, and Python then leaves it ignored: a suite run as `pytest &`
    would otherwise test nothing but that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def group_members(group: int) -> list[int]:
    """The live processes of a process group (zombies excluded), read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_ctrl_c_stops_a_local_sweep_and_the_same_command_resumes(tmp_path, ci_cache):
    runs, cache = tmp_path / "runs", ci_cache  # the session's cache: the smoke oracle and reader are built once
    command = [sys.executable, "-m", "bench", *GRID, "--runs", str(runs), "--cache-dir", str(cache),
               "--out", str(tmp_path / "results")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True,  # its own process group, as a terminal's foreground job
                             preexec_fn=as_in_a_terminal)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(runs.glob("*/*/f=*/seed=*/metrics.json")):
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.2)
    finished = {path: path.stat().st_mtime_ns for path in runs.glob("*/*/f=*/seed=*/metrics.json")}
    assert finished, "no run finished within 300 s"
    assert len(group_members(sweep.pid)) >= 3  # the main process and its two workers
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground process group
    interrupted = time.monotonic()
    _, stderr = sweep.communicate(timeout=STOPPED_WITHIN)
    while group_members(sweep.pid) and time.monotonic() - interrupted < STOPPED_WITHIN:
        time.sleep(0.1)
    assert not group_members(sweep.pid), "worker processes outlived the sweep"
    assert time.monotonic() - interrupted < STOPPED_WITHIN
    assert sweep.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert "interrupted" in last and "again to resume" in last, stderr[-2000:]
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr[-3000:]
    for folder in (tmp_path, cache):  # nothing half-written
        assert not list(folder.rglob("*.tmp")) and not list(folder.rglob("*.tmp.*"))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(runs.glob("*/*/f=*/seed=*/metrics.json"))) == 4
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was trained again"


def test_sigterm_to_the_main_process_alone_stops_the_workers_too(tmp_path):
    """`kill PID` (or `timeout`, a container stop) signals the main process only: it stops its workers as Ctrl-C
    does, within seconds, and leaves nothing half-written."""
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "bench", *GRID, "--no-eval", "--runs", str(runs), "--cache-dir",
               str(tmp_path / "cache"), "--out", str(tmp_path / "results")]
    sweep = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_in_a_terminal)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(runs.glob("*/*/f=*/seed=*/checkpoint.pt")):
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.2)
    assert len(group_members(sweep.pid)) >= 3  # the main process and its two workers, training
    sweep.terminate()  # SIGTERM to the main process alone
    stopped = time.monotonic()
    _, stderr = sweep.communicate(timeout=STOPPED_WITHIN)
    while group_members(sweep.pid) and time.monotonic() - stopped < STOPPED_WITHIN:
        time.sleep(0.1)
    assert not group_members(sweep.pid), "worker processes outlived the sweep"
    assert sweep.returncode == 130 and "again to resume" in stderr.strip().splitlines()[-1], stderr[-2000:]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.tmp.*"))


# --- each signal in each state, deterministically: the sweep waits at a chosen point (tests/pausing) ------------------

PAUSING = ROOT / "tests" / "pausing"
SMALL = ["run", "--preset", "smoke", "--datasets", "synthfaces", "--models", "ccvae,m2", "--fs", "1", "--jobs", "2"]


def paused_sweep(tmp_path: Path, point: str, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, list[str]]:
    """A small local sweep that waits at `point` (tests/pausing/sitecustomize.py), in its own process group."""
    command = [sys.executable, "-m", "bench", *SMALL, *extra, "--runs", str(tmp_path / "runs"), "--cache-dir",
               str(tmp_path / "cache"), "--out", str(tmp_path / "results")]
    (tmp_path / "paused").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_TEST_PAUSE": point,
           "BENCH_TEST_PAUSE_DIR": str(tmp_path / "paused"),
           "PYTHONPATH": os.pathsep.join([str(PAUSING), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=as_in_a_terminal)
    return sweep, command


def wait_for(tmp_path: Path, sweep: subprocess.Popen, ready, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ready(sorted((tmp_path / "paused").iterdir())):
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.1)
    assert ready(sorted((tmp_path / "paused").iterdir())), "the sweep never reached its point"


def stopped_cleanly(tmp_path: Path, sweep: subprocess.Popen, how: str) -> None:
    """Signal the sweep (`group`: SIGINT to its process group, as Ctrl-C; `main`: SIGTERM to its main process, as
    `kill PID`) and check it ended within seconds, every process with it, nothing half-written, one line to resume."""
    if how == "group":
        os.killpg(sweep.pid, signal.SIGINT)
    else:
        sweep.terminate()
    signalled = time.monotonic()
    _, stderr = sweep.communicate(timeout=STOPPED_WITHIN)
    while group_members(sweep.pid) and time.monotonic() - signalled < STOPPED_WITHIN:
        time.sleep(0.1)
    assert not group_members(sweep.pid), "processes outlived the sweep"
    assert sweep.returncode == 130, stderr[-3000:]
    assert "again to resume" in stderr.strip().splitlines()[-1], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.tmp.*"))  # nothing half-written


def pids(markers: list[Path], point: str) -> set[str]:
    return {marker.suffix for marker in markers if marker.stem == point}


@pytest.mark.parametrize(("point", "how"), [("start", "group"), ("start", "main"), ("oracle", "group"),
                                             ("oracle", "main"), ("training", "group"), ("training", "main")])
def test_a_sweep_stopped_before_its_first_cell_while_building_the_oracle_or_mid_cell_stops_cleanly(
        tmp_path, point, how):
    sweep, _ = paused_sweep(tmp_path, point, ("--no-eval",) if point == "training" else ())
    wait_for(tmp_path, sweep, lambda markers: pids(markers, point))
    stopped_cleanly(tmp_path, sweep, how)
    if point == "oracle":  # the oracle's cache holds no half-built oracle: the next sweep builds it whole
        assert not list((tmp_path / "cache").rglob("oracle-*.pt"))


def test_a_worker_waiting_on_the_oracles_lock_while_the_other_builds_it_stops(tmp_path):
    sweep, _ = paused_sweep(tmp_path, "lock")
    wait_for(tmp_path, sweep, lambda markers: pids(markers, "oracle") and pids(markers, "lock") - pids(markers,
                                                                                                          "oracle"))
    stopped_cleanly(tmp_path, sweep, "main")
    assert not list((tmp_path / "cache").rglob("oracle-*.pt"))  # no half-built oracle for the next sweep to read
    waiting = list((tmp_path / "runs").glob("*/*/f=*/seed=*/metrics.json"))  # trained, its evaluation not begun
    assert len(waiting) == 1 and not list(waiting[0].parent.glob("eval/*.json"))


def test_a_sweep_stopped_while_writing_its_tables_leaves_whole_files_and_writes_them_again(tmp_path):
    sweep, command = paused_sweep(tmp_path, "tables", ("--no-eval",))
    wait_for(tmp_path, sweep, lambda markers: pids(markers, "tables"))
    stopped_cleanly(tmp_path, sweep, "group")
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "2 of 2 cells finished earlier" in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "results" / "REPORT.md").is_file()
