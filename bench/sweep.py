"""The sweep behind `python -m bench run`: a grid of cells, each trained and evaluated once.

A cell is one RunConfig (data set, model, f, seed, preset). Its run directory is locked while
a process works on it, so two sweeps on the same runs directory never train the same cell
twice: the second one reports the cell as busy and goes on. Finished work is skipped and a
partial run resumes from its checkpoint. A failed cell is reported by name and does not stop
the others.

Launchers:
- inline  one cell after another in this process;
- local   N worker processes (spawned), each with its share of the CPU threads and, where
          there are several GPUs, a GPU of its own. Ctrl-C stops it within seconds: the queued
          cells are cancelled and the workers stopped (a run in progress keeps its last checkpoint and
          resumes; a file being written is removed, never left half-written), and the next run of the
          same command goes on where it stopped;
- slurm   a submitit job array, one task per cell; each task's log is linked into its run
          directory; this process waits and shows progress.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import submitit
import submitit.helpers
import torch
from tqdm import tqdm as tqdm_std
from tqdm.auto import tqdm

from bench import rundir
from bench.config import RunConfig, StepOptions, make_config
from bench.data import default_datasets, load
from bench.errors import BenchError, Regression
from bench.files import atomic_write_text, exclusive
from bench.models import default_models
from bench.presets import preset
from bench.registry import Registry
from bench.runtime import tune_cpu_allocator

DEFAULT_FS = (0.004, 0.06, 0.2, 1.0)
DEFAULT_SEEDS = (0,)
LAUNCHERS = Registry("launcher", {"local": "worker processes on this machine (the default)",
                                  "inline": "one cell after another in this process",
                                  "slurm": "one Slurm job per cell (submitit)"})


@dataclass(frozen=True)
class Grid:
    """Data sets × models × f × seeds at one preset. Left empty, a dimension is the default: the data sets
    of the default grid whose files are here (`bench.data`), every registered model (`bench.models`),
    the paper's four rates, seed 0."""

    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    fs: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    preset: str = "quick"
    epochs: int | None = None  # None: the preset's length
    optimiser_steps: int | None = None  # None: the preset's length
    step: StepOptions = field(default_factory=StepOptions)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # --dataset-option, for every data set of the grid

    def cells(self, data_root: str | None = None) -> list[RunConfig]:
        """Every combination, validated before any work starts, seed by seed."""
        datasets = self.datasets or default_datasets(data_root)
        models, fs, seeds = self.models or default_models(), self.fs or DEFAULT_FS, self.seeds or DEFAULT_SEEDS
        # seed-major: an interrupted sweep leaves whole seeds of the grid done, not every seed of a few cells
        return [make_config(model, dataset, f, seed, self.preset, self.epochs, step=self.step,
                            dataset_overrides=self.dataset_options, optimiser_steps=self.optimiser_steps)
                for seed, dataset, model, f in itertools.product(seeds, datasets, models, fs)]


@dataclass(frozen=True)
class CellSettings:
    """How each cell is run (the same for every cell of a sweep)."""

    data_root: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    evaluators: tuple[str, ...] | None = None  # None: all; () trains only
    fid_weights: str | None = None
    show_progress: bool = True
    eval_seeds: tuple[int, ...] = ()  # evaluation seeds besides the preset's own

    def evaluation_seeds(self, preset_name: str) -> list[int]:
        """The preset's evaluation seed (always: its numbers are the ones checked and drawn), then the others."""
        own = preset(preset_name).evaluation.seed
        return [own, *sorted(set(self.eval_seeds) - {own})]


CellState = Literal["done", "evaluate", "resume", "todo"]
"""Where a cell stands before a sweep: finished and evaluated; trained, evaluations missing; a checkpoint to resume
from; nothing yet."""
OutcomeState = Literal["done", "failed", "busy"]
"""How a cell ended in this sweep: finished (now or earlier), failed, or held by another process."""


@dataclass
class Outcome:
    cell: str
    state: OutcomeState
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def cell_name(config: RunConfig) -> str:
    return f"{config.dataset}/{config.model}/f={config.f:g}/seed={config.seed}"


def cell_state(config: RunConfig, runs_root: Path, evaluators: tuple[str, ...] | None,
               eval_seeds: list[int] | None = None) -> CellState:
    """The cell's `CellState` ('evaluate': evaluations missing at one of `eval_seeds`; None: the preset's)."""
    from bench.evaluate import evaluation_dir
    from evaluators import EVALUATORS

    run_dir = config.run_dir(runs_root)
    if rundir.finished(run_dir):
        names = EVALUATORS.chosen(evaluators) if evaluators != () else []
        directories = [evaluation_dir(run_dir / rundir.EVAL, seed, config.preset) for seed in eval_seeds or [None]]
        missing = [name for name in names for out in directories if not (out / f"{name}.json").is_file()]
        return "evaluate" if missing else "done"
    return "resume" if (run_dir / rundir.CHECKPOINT).is_file() else "todo"


def run_cell(config: RunConfig, runs_root: Path, settings: CellSettings, data=None,
             device: torch.device | None = None) -> Outcome:
    """Train (or resume) and evaluate one cell, unless another process holds it."""
    from bench.evaluate import evaluate_run
    from bench.train import resolve_device, train

    run_dir = config.run_dir(runs_root)
    with exclusive(run_dir.parent / f".{run_dir.name}.lock", wait=False) as mine:
        if not mine:
            return Outcome(cell_name(config), "busy", "another sweep is working on it")
        device = device or resolve_device(settings.device)
        if data is None:
            data = load(config.dataset, settings.data_root, settings.cache_dir, config.dataset_options)
        metrics = train(config, data, run_dir, device, show_progress=settings.show_progress)
        for eval_seed in settings.evaluation_seeds(config.preset) if settings.evaluators != () else []:
            evaluate_run(run_dir, device, list(settings.evaluators) if settings.evaluators else None,
                         settings.data_root, settings.cache_dir, settings.fid_weights, skip_done=True, data=data,
                         show_progress=settings.show_progress, eval_seed=eval_seed)
    return Outcome(cell_name(config), "done", metrics=metrics)


def guarded_run_cell(config: RunConfig, runs_root: Path, settings: CellSettings, data=None,
                     device: torch.device | None = None) -> Outcome:
    """run_cell, with any failure turned into a failed Outcome (one line; the traceback in the run directory)."""
    try:
        return run_cell(config, runs_root, settings, data, device)
    except Exception as error:  # a failed cell must not stop the others
        run_dir = config.run_dir(runs_root)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        message = str(error) if isinstance(error, BenchError) else f"{type(error).__name__}: {error}"
        return Outcome(cell_name(config), "failed", f"{message} (traceback: {run_dir / 'error.txt'})")


def launch_inline(cells: list[RunConfig], runs_root: Path, settings: CellSettings) -> list[Outcome]:
    from bench.train import resolve_device

    device = resolve_device(settings.device)
    if settings.evaluators != ():
        for config in _one_per_dataset(cells):  # what the runs of each data set share, built first (as local does)
            prepare_shared(config, settings)
    outcomes, loaded = [], {}
    for position, config in enumerate(cells, 1):
        print(f"[{position}/{len(cells)}] {cell_name(config)}", file=sys.stderr)
        key = (config.dataset, json.dumps(config.dataset_options, sort_keys=True))
        if key not in loaded:  # keep one data set in memory at a time
            loaded = {key: load(config.dataset, settings.data_root, settings.cache_dir, config.dataset_options)}
        outcomes.append(guarded_run_cell(config, runs_root, settings, loaded[key], device))
        print_outcome(outcomes[-1])
    return outcomes


STOP_SECONDS = 10.0  # how long a stopped worker has to unwind (remove its temporary files) before it is killed


class Stopped(BaseException):
    """Raised in a local worker by SIGTERM (the sweep was interrupted): not an Exception, so no cell's error handling
    swallows it; every `finally` on the way out runs (temporary files removed, locks released)."""


def _stop(signum, frame) -> None:
    raise Stopped()


def _local_worker_setup(devices: multiprocessing.Queue, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the workers
    signal.signal(signal.SIGTERM, _stop)
    # tqdm's default lock is a multiprocessing semaphore; a stopped worker ends without finalisers (os._exit) and
    # would leave it for the resource tracker to report as leaked. The workers' bars are off: a thread lock will do.
    tqdm_std.set_lock(threading.RLock())  # the base class: every tqdm of the worker (std, auto) shares it
    tune_cpu_allocator()
    torch.set_num_threads(threads)
    device = devices.get()
    os.environ["BENCH_WORKER_DEVICE"] = device  # read by _local_task in this worker process only


def _until_stopped(work, *args):
    """Run `work` in a local worker; when the sweep stops it (SIGTERM), end this process once `work` has unwound,
    so that it never takes another queued call."""
    try:
        return work(*args)
    except Stopped:
        os._exit(128 + signal.SIGTERM)


def _local_task(config: RunConfig, runs_root: Path, settings: CellSettings) -> Outcome:
    return _until_stopped(guarded_run_cell, config, runs_root, settings,
                          None, torch.device(os.environ["BENCH_WORKER_DEVICE"]))


def _local_prepare(config: RunConfig, runs_root: Path, settings: CellSettings) -> str | None:
    return _until_stopped(prepare_and_judge_controls, config, runs_root, settings)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued calls and stop the workers: SIGTERM (each unwinds: temporary files removed, locks
    released), then SIGKILL for any still alive after STOP_SECONDS. Waits until every worker has ended."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown, which forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()
    pool.shutdown(wait=True)  # the pool's manager thread sees the workers gone, closes its queues and ends


def worker_devices(device_name: str, jobs: int) -> list[str]:
    """One device name per worker: GPUs round-robin where there are several, else the one device."""
    from bench.train import resolve_device

    device = resolve_device(device_name)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [f"cuda:{worker % torch.cuda.device_count()}" for worker in range(jobs)]
    return [str(device)] * jobs


def launch_local(cells: list[RunConfig], runs_root: Path, settings: CellSettings, jobs: int) -> list[Outcome]:
    if jobs < 1:
        raise BenchError(f"--jobs {jobs} must be at least 1")
    context = multiprocessing.get_context("spawn")
    devices = context.Queue()
    for device in worker_devices(settings.device, jobs):
        devices.put(device)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    quiet = replace(settings, show_progress=False)
    finished = [config for config in cells if cell_state(config, runs_root, settings.evaluators,
                                                         settings.evaluation_seeds(config.preset)) == "done"]
    outcomes = [Outcome(cell_name(config), "done", "finished earlier") for config in finished]
    todo = [config for config in cells if config not in finished]
    if finished:
        print(f"{len(finished)} of {len(cells)} cells finished earlier; {len(todo)} to run", file=sys.stderr)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_local_worker_setup, initargs=(devices, threads))
    previous = signal.signal(signal.SIGTERM, _interrupted)  # `kill PID`, `timeout`, a container stop: as Ctrl-C
    try:
        # What a data set's runs share is built first, by the workers (one data set each, in parallel), while
        # the other workers start training; a run that reaches its evaluation first waits for it (cache locks).
        # The same worker then judges the data set's controls, so that a sweep stopped part-way has them.
        shared = [pool.submit(_local_prepare, config, runs_root, settings) for config in _one_per_dataset(cells)
                  if settings.evaluators != ()]
        # MVAE's longer budget (an epoch preset's model_epochs) does not end last
        longest_first = sorted(todo, key=lambda config: -(config.epochs or 0))
        futures = {pool.submit(_local_task, config, runs_root, quiet): config for config in longest_first}
        with tqdm(total=len(cells), initial=len(finished), desc=f"{jobs} local jobs", unit="cell",
                  file=sys.stderr) as bar:
            for future in as_completed([*shared, *futures]):
                if future in shared:
                    if future.exception() is not None:  # an error building an oracle stops the sweep
                        raise future.exception()
                    note = future.result()  # a line where a control could not be judged
                    if note:
                        bar.write(note, file=sys.stderr)
                    continue
                outcomes.append(future.result())
                bar.update()
                print_outcome(outcomes[-1], lambda text: bar.write(text, file=sys.stderr))
    except BaseException:  # Ctrl-C or SIGTERM (KeyboardInterrupt), or an error building what the runs share
        stop_workers(pool)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        devices.close()
        devices.join_thread()
    pool.shutdown()
    return outcomes


def _interrupted(signum, frame) -> None:
    """SIGTERM to a local sweep's main process: stop as Ctrl-C stops it (the workers first, then this process)."""
    raise KeyboardInterrupt


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    minutes: int = 240
    gpus: int = 1
    cpus: int = 8
    parallel: int = 64  # array tasks running at once
    max_retries: int = 3  # requeues of a task after a timeout or preemption


class SlurmCell(submitit.helpers.Checkpointable):
    """One array task: link this task's Slurm log into the run directory, then run the cell.

    When Slurm signals a timeout or a preemption, submitit calls `checkpoint` (Checkpointable's: the same call,
    resubmitted) and requeues the task, at most `SlurmSettings.max_retries` times; the requeued task resumes the
    run from its last checkpoint (written every `--checkpoint-every` steps and at the end of every epoch) and,
    on the CPU, ends with the numbers of an uninterrupted run."""

    def __call__(self, config: RunConfig, runs_root: Path, settings: CellSettings) -> Outcome:
        return _slurm_task(config, runs_root, settings)


def _slurm_task(config: RunConfig, runs_root: Path, settings: CellSettings) -> Outcome:
    tune_cpu_allocator()
    run_dir = config.run_dir(runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = submitit.JobEnvironment().paths
    for source, name in ((paths.stdout, "slurm.out"), (paths.stderr, "slurm.err")):
        link = run_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(Path(source).resolve())
    return guarded_run_cell(config, runs_root, settings)


def slurm_executor(runs_root: Path, slurm: SlurmSettings):
    if shutil.which("sbatch") is None:
        raise BenchError("--launcher slurm needs Slurm, but sbatch is not on PATH; use --launcher local or inline")
    executor = submitit.AutoExecutor(folder=runs_root / "slurm" / "%A")
    parameters = {"timeout_min": slurm.minutes, "gpus_per_node": slurm.gpus, "cpus_per_task": slurm.cpus,
                  "slurm_array_parallelism": slurm.parallel, "slurm_max_num_timeout": slurm.max_retries,
                  "name": "ccvae-bench"}
    if slurm.partition:
        parameters["slurm_partition"] = slurm.partition
    executor.update_parameters(**parameters)
    return executor


def launch_slurm(cells: list[RunConfig], runs_root: Path, settings: CellSettings, executor,
                 poll_seconds: float = 10.0) -> list[Outcome]:
    """Submit one array task per cell not finished yet with `executor` (submitit) and wait for all of them; a
    finished cell asks for no node."""
    quiet = replace(settings, show_progress=False)
    finished = {index for index, config in enumerate(cells) if cell_state(
        config, runs_root, settings.evaluators, settings.evaluation_seeds(config.preset)) == "done"}
    outcomes = {index: Outcome(cell_name(cells[index]), "done", "finished earlier") for index in finished}
    todo = [index for index in range(len(cells)) if index not in finished]
    jobs = executor.map_array(SlurmCell(), [cells[index] for index in todo], [runs_root] * len(todo),
                              [quiet] * len(todo)) if todo else []
    print(f"submitted {len(todo)} array tasks (job {jobs[0].job_id.split('_')[0] if jobs else '—'}; "
          f"{len(outcomes)} cells finished earlier); logs under {runs_root / 'slurm'}", file=sys.stderr)
    with tqdm(total=len(cells), initial=len(outcomes), desc="slurm", unit="cell", file=sys.stderr) as bar:
        while len(outcomes) < len(cells):
            for index, job in zip(todo, jobs, strict=True):
                if index in outcomes or not job.done():
                    continue
                try:
                    outcomes[index] = job.result()
                except Exception as error:  # the task itself died (time limit, node failure, …)
                    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    outcomes[index] = Outcome(cell_name(cells[index]), "failed",
                                              f"Slurm job {job.job_id}: {first_line} (log: {job.paths.stderr})")
                bar.update()
                print_outcome(outcomes[index], lambda text: bar.write(text, file=sys.stderr))
            if len(outcomes) < len(cells):
                time.sleep(poll_seconds)
    return [outcomes[index] for index in range(len(cells))]


def launch(cells: list[RunConfig], runs_root: Path, settings: CellSettings, launcher: str, jobs: int,
           slurm: SlurmSettings | None = None) -> list[Outcome]:
    """Run the cells with the chosen launcher (the runs directory marked as this suite's first), then judge each
    data set's controls with the same evaluators; the cells' outcomes."""
    from bench.evaluate import evaluation_preset  # the budgets checked before any cell trains

    LAUNCHERS[launcher]  # an unknown launcher is one line naming the others, before anything is written
    for name in sorted({config.preset for config in cells}):
        evaluation_preset(name)
    rundir.mark_runs_root(runs_root)
    if launcher == "slurm":
        executor = slurm_executor(runs_root, slurm or SlurmSettings(parallel=jobs))
        outcomes = launch_slurm(cells, runs_root, settings, executor)
    elif launcher == "local":
        load_each_dataset(cells, settings)
        outcomes = launch_local(cells, runs_root, settings, jobs)
    else:
        outcomes = launch_inline(cells, runs_root, settings)
    if settings.evaluators != ():
        judge_controls(cells, runs_root, settings)
    return outcomes


def judge_controls(cells: list[RunConfig], runs_root: Path, settings: CellSettings) -> None:
    """The controls of each data set of the grid (`bench.evaluate.evaluate_controls`), in this process; a control
    already judged (by a local sweep's worker, or an earlier sweep) is not judged again."""
    from bench.evaluate import evaluate_controls
    from bench.train import resolve_device

    device = resolve_device(os.environ.get("BENCH_WORKER_DEVICE", settings.device))
    for config in _one_per_dataset(cells):
        data = load(config.dataset, settings.data_root, settings.cache_dir, config.dataset_options)
        for eval_seed in settings.evaluation_seeds(config.preset):
            evaluate_controls(config, data, runs_root, device, settings.cache_dir, settings.fid_weights,
                              list(settings.evaluators) if settings.evaluators else None, eval_seed)


def _one_per_dataset(cells: list[RunConfig]) -> list[RunConfig]:
    """One cell per (data set, data set options, preset)."""
    return list({(c.dataset, json.dumps(c.dataset_options, sort_keys=True), c.preset): c for c in cells}.values())


def load_each_dataset(cells: list[RunConfig], settings: CellSettings) -> None:
    """Load every data set of the grid once, building its cache: a missing one fails here, before any run starts."""
    for config in _one_per_dataset(cells):
        load(config.dataset, settings.data_root, settings.cache_dir, config.dataset_options)


def prepare_shared(config: RunConfig, settings: CellSettings) -> None:
    """Build what the runs of `config`'s data set share (the oracle, the GP head, the factor reader) once, so
    that parallel workers do not all wait for the first to build it; run by a local worker, beside the others."""
    from bench.evaluate import prepare
    from bench.train import resolve_device

    data = load(config.dataset, settings.data_root, settings.cache_dir, config.dataset_options)
    prepare(config, data, resolve_device(os.environ.get("BENCH_WORKER_DEVICE", settings.device)), settings.cache_dir,
            settings.evaluators)


def prepare_and_judge_controls(config: RunConfig, runs_root: Path, settings: CellSettings) -> str | None:
    """A local worker's first task per data set: what its runs share, then its controls (which need only that).
    An error building what the runs share stops the sweep; one judging a control does not (the cells go on, and
    `launch` judges the controls again at the end, where the error stops it): a line saying so, else None."""
    prepare_shared(config, settings)
    try:
        judge_controls([config], runs_root, settings)
    except Exception as error:
        return f"{config.dataset} controls: {type(error).__name__}: {error} (judged again when the cells are done)"
    return None


def print_outcome(outcome: Outcome, write=None) -> None:
    write = write or (lambda text: print(text, file=sys.stderr))
    if outcome.state == "failed":
        write(f"FAILED {outcome.cell}: {outcome.message}")
    elif outcome.state == "busy":
        write(f"skipped {outcome.cell}: {outcome.message}")


def dry_run(cells: list[RunConfig], runs_root: Path, settings: CellSettings) -> str:
    """One line per cell with its state, and a count per state."""
    states = [cell_state(config, runs_root, settings.evaluators, settings.evaluation_seeds(config.preset))
              for config in cells]
    lines = [f"{state:>8}  {cell_name(config)}" for config, state in zip(cells, states, strict=True)]
    counts = ", ".join(f"{states.count(state)} {state}" for state in get_args(CellState) if states.count(state))
    return "\n".join([*lines, f"{len(cells)} cells: {counts} (runs directory {runs_root})"])


def raise_for_failures(outcomes: list[Outcome]) -> None:
    """`Regression` (exit code 1) naming the failed cells, if any failed."""
    if any(outcome.state == "failed" for outcome in outcomes):
        raise Regression(summarise(outcomes))


def summarise(outcomes: list[Outcome]) -> str:
    failed = [outcome.cell for outcome in outcomes if outcome.state == "failed"]
    busy = [outcome.cell for outcome in outcomes if outcome.state == "busy"]
    text = f"{len(outcomes) - len(failed) - len(busy)} of {len(outcomes)} cells done"
    if busy:
        text += f"; {len(busy)} left to another sweep: {', '.join(busy)}"
    if failed:
        text += f"; {len(failed)} FAILED: {', '.join(failed)}"
    return text
