"""Command line: python -m bench {train,run,tables,claims,check,reproduce,eval,oracle,data,perf,list}.

This module parses and dispatches; the work is done by the modules each command names. Options
shared by several commands are declared once (the parent parsers below). User errors print one
line and exit with code 2; a regression or a failed cell exits with 1; `--debug` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.presets import PRESETS
from bench.runtime import tune_cpu_allocator

DESCRIPTION = ("Train CCVAE and its baselines, evaluate them with independent evaluators, write the paper's tables "
               "and decide its claims. Start with `python -m bench run --all --preset smoke` (every code path in "
               "minutes); `python -m bench <command> --help` for each command. Errors print one line and exit 2; a "
               "regression or a failed cell exits 1; --debug shows tracebacks.")
DEFAULT_RUNS = "runs"
PAPER_CSV = Path("results") / "paper.csv"
STORED = Path("results") / "stored"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with the fix: see --help) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------- value parsers
def _floats(text: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",") if value]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from error


def _ints(text: str) -> list[int]:
    try:
        return [int(value) for value in text.split(",") if value]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from error


def _names(text: str) -> list[str]:
    return [value for value in text.split(",") if value]


def _options(pairs: list[str] | None) -> dict:
    """NAME=VALUE pairs; a VALUE that parses as JSON (numbers, true/false) is taken as that."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BenchError(f"option '{pair}' must look like name=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


# ------------------------------------------------------------------------------------- shared options
def _parent(*adders) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    for add in adders:
        add(parent)
    return parent


def _debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", help="folder holding the data set's files (CelebA, CheXpert, MNIST)")
    parser.add_argument("--cache-dir", help="decoded-data cache (default $BENCH_CACHE or ~/.cache/ccvae-bench)")


def _device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")


def _preset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=list(PRESETS),
                        help="the budget of training, evaluation and the oracle (default quick; bench/presets.py)")


def _runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", help="runs directory (default runs/<preset>)")
    _preset(parser)


def _dataset_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-option", action="append", metavar="NAME=VALUE", help="e.g. uncertain=zeros")


def _out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="results", metavar="DIR",
                        help="the folder written to (tables, reports, results.csv, claims; perf.csv; default results)")


def _paper(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paper", default=str(PAPER_CSV), help=f"the paper's numbers (default {PAPER_CSV})")


def _eval_seeds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval-seeds", type=_ints, help="evaluate at these evaluation seeds too (the preset's, 0, "
                        "always); another seed draws other test images and samples and writes eval/seed=S/")


def _fid_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fid-weights", help="pytorch-fid Inception weights file (default: torch's hub cache)")


def _step(parser: argparse.ArgumentParser) -> None:
    """How training steps run (bench.config.StepOptions; part of a run's identity)."""
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep NCHW memory format (default: channels-last)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's loss")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs, AMX CPUs)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic kernels (exact reruns on a GPU; CPU runs are exact without it)")


def _grid(parser: argparse.ArgumentParser) -> None:
    from bench.sweep import LAUNCHERS

    parser.add_argument("--datasets", type=_names, help="comma-separated (default: the registry's default grid "
                                                        "whose files are here; see `bench data --list`)")
    parser.add_argument("--models", type=_names,
                        help="comma-separated: registered names, package.module:Class, or NAME=package.module:Class "
                             "to give a class a name for its folders and table rows (default: every registered model)")
    parser.add_argument("--fs", type=_floats, help="comma-separated supervision rates (default 0.004,0.06,0.2,1)")
    parser.add_argument("--seeds", type=_ints, help="comma-separated (default 0)")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the preset's length (a "
                                                   "different run identity)")
    parser.add_argument("--steps", type=int, help="train this many optimiser steps at every f instead of the "
                                                  "preset's length (a different run identity)")
    parser.add_argument("--launcher", default=next(iter(LAUNCHERS)), choices=list(LAUNCHERS),
                        help="local (default: --jobs processes), inline or slurm")
    parser.add_argument("--jobs", type=int, default=2,
                        help="parallel processes (local; default 2) or array tasks at once (slurm)")
    parser.add_argument("--slurm-partition", help="Slurm partition (default: the cluster's)")
    parser.add_argument("--slurm-minutes", type=int, default=240, help="time limit per cell (default 240)")
    parser.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per cell (default 1)")
    parser.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per cell (default 8)")
    parser.add_argument("--slurm-max-retries", type=int, default=3,
                        help="requeues of a cell after a timeout or preemption, each resuming from its checkpoint "
                             "(default 3)")
    _eval_seeds(parser)
    _dataset_option(parser)
    _out(parser)
    _paper(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bench", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    common = _parent(_data, _device, _runs, _debug)
    grid = _parent(_grid, _fid_weights, _step)

    train = commands.add_parser("train", parents=[common, _parent(_step, _dataset_option)],
                                help="train one model on one data set at one supervision rate")
    train.add_argument("--model", required=True,
                       help="a registered name (`python -m bench list models`), package.module:Class, or "
                            "NAME=package.module:Class (its folder and table rows are then called NAME)")
    train.add_argument("--dataset", default="synthfaces")
    train.add_argument("--f", type=float, default=1.0, help="supervision rate in (0, 1]")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, help="train this many epochs instead of the preset's length")
    train.add_argument("--steps", type=int, help="train this many optimiser steps instead of the preset's length")
    train.add_argument("--model-option", action="append", metavar="NAME=VALUE", help="e.g. latents_per_label=3")
    train.add_argument("--checkpoint-every", type=int, default=200, help="steps between mid-epoch checkpoints")

    run = commands.add_parser("run", parents=[common, grid], help="train, evaluate and tabulate a grid of runs")
    run.add_argument("--all", action="store_true",
                     help="the whole default grid (restrict it with --datasets, --models, --fs, --seeds)")
    run.add_argument("--dry-run", action="store_true", help="list the cells and which are done; run nothing")
    run.add_argument("--no-eval", action="store_true", help="train only; skip the evaluators")

    tables = commands.add_parser("tables", parents=[_parent(_runs, _debug)],
                                 help="gather every run directory into the paper's tables")
    _out(tables)
    _paper(tables)
    tables.add_argument("--stored", metavar="DIR", help="re-render a stored set's tables, REPORT.md and claims from "
                        "its results.csv and notes.json (e.g. results/stored/quick); no runs needed")

    listing = commands.add_parser("list", parents=[_parent(_debug)],
                                  help="print a registry (models, data sets, presets, evaluators, tables, claims)")
    listing.add_argument("registry", nargs="?", help="models, datasets, presets, evaluators, tables or claims "
                         "(default: all, as docs/REFERENCE.md)")

    claims = commands.add_parser("claims", parents=[_parent(_debug)],
                                 help="decide the paper's claims on a results file: claims.csv and CLAIMS.md")
    claims.add_argument("--results", default=str(Path("results") / "results.csv"),
                        help="a results.csv (default results/results.csv; e.g. results/stored/quick/results.csv)")
    claims.add_argument("--out", metavar="DIR", default="results",
                        help="the folder for claims.csv and CLAIMS.md (default results)")
    claims.add_argument("--subject", metavar="MODEL",
                        help="judge this model in CCVAE's place (against the baselines and CCVAE itself), e.g. one "
                             "trained with `run --models pkg.module:Class` or evaluated with `bench eval`")
    claims.add_argument("--stored", metavar="DIR",
                        help="join a stored set's results.csv (e.g. results/stored/claims) to --results: the models "
                             "to judge --subject against")

    check = commands.add_parser("check", parents=[_parent(_runs, _debug)],
                                help="compare fresh results with stored ones; exit 1 on a regression")
    check.add_argument("--stored", help="stored result set (default results/stored/<preset>)")
    check.add_argument("--tolerance", action="append", metavar="NUMBER|METRIC=NUMBER",
                       help="for cells of one stored seed: a number scales every declared tolerance, "
                            "METRIC=NUMBER sets one absolute tolerance")
    check.add_argument("--sds", type=float, default=None, metavar="NUMBER",
                       help="for cells of several stored seeds: how many moderated seed standard deviations below "
                            "the stored mean is a regression (default: the Student-t prediction bound at the level "
                            "at which the measured tail of honest seeds gives 2.5 %% false alarms over the single "
                            "numbers; the other 2.5 %% for the models)")
    check.add_argument("--results", metavar="FILE",
                       help="judge this results.csv (written elsewhere by `bench run`) instead of a runs directory")
    check.add_argument("--power", action="store_true",
                       help="print, per metric, the worsening the check flags with 80 %% probability; stop")
    check.add_argument("--calibrate", action="store_true",
                       help="fit the tails of honest seeds' p-values on every stored set beside --stored (leaving "
                            "each seed out in turn) and write calibration.csv there; stop")
    check.add_argument("--update", action="store_true", help="store the fresh results instead of comparing")
    check.add_argument("--restore", action="store_true",
                       help="rebuild the stored set's run directories under --runs (numbers, no checkpoints), so that "
                            "a sweep stored part-way goes on without retraining what it had finished")
    check.add_argument("--update-datasets", metavar="D1,D2",
                       help="with --update: replace only these data sets' numbers in the stored set, keep the rest")

    from bench.tables import all_tables

    reproduce = commands.add_parser("reproduce", parents=[common, grid],
                                    help="the cells and evaluators of one table: run, tabulate, check")
    reproduce.add_argument("--table", required=True, choices=list(all_tables()), help=", ".join(all_tables()))
    reproduce.add_argument("--stored", help="stored result set (default results/stored/<preset>)")

    evaluate = commands.add_parser("eval", parents=[_parent(_data, _device, _fid_weights, _runs, _dataset_option,
                                                            _debug)],
                                   help="run the evaluators on a trained run directory, or on a model trained "
                                        "elsewhere (--model --checkpoint --dataset)")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                          help="e.g. runs/quick/synthfaces/ccvae/f=0.06/seed=0")
    evaluate.add_argument("--model", metavar="MODULE:CLASS", help="a model class with the interface of bench/api.py")
    evaluate.add_argument("--checkpoint", help="its state dict as torch.save wrote it (read without running code)")
    evaluate.add_argument("--trust-checkpoint", action="store_true",
                          help="allow a checkpoint that holds a whole pickled module: loading it RUNS THE FILE'S CODE; "
                               "only for files you trust")
    evaluate.add_argument("--dataset", help="the data set to evaluate it on")
    evaluate.add_argument("--model-option", action="append", metavar="NAME=VALUE", help="passed to the class")
    evaluate.add_argument("--name", help="its row in the tables (default: the class name)")
    evaluate.add_argument("--f", type=float, default=1.0, help="the f column it goes in (default 1)")
    evaluate.add_argument("--only", type=_names, help="comma-separated evaluators (default all)")
    _eval_seeds(evaluate)

    oracle = commands.add_parser("oracle", parents=[_parent(_data, _device, _preset, _dataset_option, _debug)],
                                 help="train (once, cached) or show a data set's oracle classifier")
    oracle.add_argument("--dataset", required=True)

    data = commands.add_parser("data", parents=[_parent(_data, _dataset_option, _debug)],
                               help="list the data sets, or decode, cache and describe one")
    data.add_argument("--dataset", help="the data set to decode and describe")
    data.add_argument("--list", action="store_true", help="show every registered data set and how to get it")

    perf = commands.add_parser("perf", parents=[_parent(_device, _fid_weights, _step, _debug)],
                               help="images per second of training steps, data pipeline and evaluators")
    perf.add_argument("--models", type=_names, help="comma-separated (default: every registered model)")
    perf.add_argument("--batch", type=int, default=200, help="images per step (default 200, the paper's)")
    perf.add_argument("--steps", type=int, default=10, help="timed steps per repeat (default 10)")
    perf.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is kept (default 5)")
    perf.add_argument("--evaluators", type=_names, help="comma-separated, or none (default: all)")
    perf.add_argument("--eval-samples", type=int, default=200, help="each evaluator's sample count (default 200)")
    perf.add_argument("--reference", metavar="DIR",
                      help="a checkout of github.com/thwjoy/ccvae_pytorch to time side by side (never copied here)")
    perf.add_argument("--epoch-images", type=int, default=0,
                      help="also time one CCVAE epoch over this many images (CelebA: 162770; default off)")
    perf.add_argument("--epoch-f", type=float, default=1.0, help="supervision rate of that epoch (default 1)")
    perf.add_argument("--no-layers", dest="layers", action="store_false",
                      help="skip timing bench.layers' layers beside torch's")
    _out(perf)
    perf.add_argument("--profile", action="store_true",
                      help="also profile every timed step by operator (torch.profiler) into DIR/perf-profile.csv")
    return parser


# ------------------------------------------------------------------------------------- from arguments
def _step_options(args: argparse.Namespace):
    from bench.config import StepOptions

    return StepOptions(channels_last=args.channels_last, compile=args.compile, bf16=args.bf16,
                       deterministic=args.deterministic)


def _runs_root(args: argparse.Namespace) -> Path:
    return Path(args.runs) if args.runs else Path(DEFAULT_RUNS) / args.preset


def _stored(args: argparse.Namespace) -> Path:
    return Path(args.stored) if args.stored else STORED / args.preset


def _cells(args: argparse.Namespace, datasets: tuple[str, ...] = ()) -> list:
    """The grid's cells, every choice validated before any work starts."""
    from bench.sweep import Grid

    grid = Grid(datasets=tuple(args.datasets or datasets), models=tuple(args.models or ()),
                fs=tuple(args.fs or ()), seeds=tuple(args.seeds or ()), preset=args.preset, epochs=args.epochs,
                optimiser_steps=args.steps, step=_step_options(args), dataset_options=_options(args.dataset_option))
    return grid.cells(args.data_root)


def _cell_settings(args: argparse.Namespace, evaluators: tuple[str, ...] | None):
    from bench import sweep

    return sweep.CellSettings(args.data_root, args.cache_dir, args.device, evaluators, args.fid_weights,
                              eval_seeds=tuple(args.eval_seeds or ()))


def _sweep(args: argparse.Namespace, cells: list, evaluators: tuple[str, ...] | None) -> list:
    from bench import sweep

    settings = _cell_settings(args, evaluators)
    slurm = sweep.SlurmSettings(args.slurm_partition, args.slurm_minutes, args.slurm_gpus, args.slurm_cpus, args.jobs,
                                args.slurm_max_retries)
    outcomes = sweep.launch(cells, _runs_root(args), settings, args.launcher, args.jobs, slurm)
    print(sweep.summarise(outcomes), file=sys.stderr)
    return outcomes


def _write_tables(runs_root: Path, out: Path, paper: Path, keys: list[str] | None = None):
    """tables/, REPORT.md, results.csv, the claims and report.html of the runs under `runs_root`, into `out`."""
    from bench.results import gather
    from bench.tables import write_tables

    results = gather(runs_root)
    write_tables(results, runs_root, out, paper, keys, figures_from=runs_root)
    _write_html(results, runs_root, out, paper, keys)
    print(f"tables: {out / 'tables'}; report: {out / 'REPORT.md'} and {out / 'report.html'}; the paper's claims: "
          f"{out / 'CLAIMS.md'}", file=sys.stderr)
    return results


def _write_html(results, runs_root: Path, out: Path, paper_path: Path, keys: list[str] | None = None) -> Path:
    from bench.files import atomic_write_text
    from bench.report import html_report
    from bench.tables import read_paper

    atomic_write_text(out / "report.html", html_report(results, runs_root, read_paper(paper_path), keys))
    return out / "report.html"


# ------------------------------------------------------------------------------------- commands
def command_train(args: argparse.Namespace) -> None:
    from bench.config import make_config
    from bench.data import load
    from bench.train import resolve_device, train

    config = make_config(args.model, args.dataset, args.f, args.seed, args.preset, args.epochs,
                         _options(args.model_option), _options(args.dataset_option), _step_options(args),
                         optimiser_steps=args.steps)
    data = load(config.dataset, args.data_root, args.cache_dir, config.dataset_options)
    run_dir = config.run_dir(_runs_root(args))
    metrics = train(config, data, run_dir, resolve_device(args.device), checkpoint_every=args.checkpoint_every)
    print(f"{run_dir}: test accuracy {metrics['test_accuracy']:.3f} "
          f"(majority baseline {metrics['majority_accuracy']:.3f})")


def command_run(args: argparse.Namespace) -> None:
    from bench import sweep
    from bench.claims import evaluate_claims, verdict_lines
    from bench.tables import accuracy_report, read_paper

    if not (args.all or args.datasets or args.models or args.fs or args.seeds):
        raise BenchError("say --all for the whole default grid, or choose cells with --models/--datasets/--fs/--seeds")
    cells = _cells(args)
    evaluators = () if args.no_eval else None
    if args.dry_run:
        print(sweep.dry_run(cells, _runs_root(args), _cell_settings(args, evaluators)))
        return
    outcomes = _sweep(args, cells, evaluators)
    if any(outcome.state == "done" for outcome in outcomes):
        results = _write_tables(_runs_root(args), Path(args.out), Path(args.paper))
        print("\n" + accuracy_report(results, read_paper(Path(args.paper))))
        print(f"\nThe paper's claims on these results ({Path(args.out) / 'CLAIMS.md'}):\n"
              + verdict_lines(evaluate_claims(results)))
    sweep.raise_for_failures(outcomes)


def command_tables(args: argparse.Namespace) -> None:
    if args.stored:  # a stored set's tables, claims and report, written into --out (the stored set only if asked)
        from bench.check import rerender

        line, numbers, runs = rerender(Path(args.stored), Path(args.paper), Path(args.out))
        print(f"{line}; report: {_write_html(numbers, runs, Path(args.out), Path(args.paper))}")
        return
    _write_tables(_runs_root(args), Path(args.out), Path(args.paper))


def command_list(args: argparse.Namespace) -> None:
    from bench.reference import listing

    print(listing(args.registry))


def command_claims(args: argparse.Namespace) -> None:
    import pandas as pd

    from bench import protocol
    from bench.claims import read_levels, verdict_lines, with_subject, write_claims
    from bench.results import read_results

    path, out = Path(args.results), Path(args.out)
    results = read_results(path)
    where = str(path)
    if args.stored:
        stored = read_results(Path(args.stored) / "results.csv")
        results = pd.concat([stored, results[~results.model.isin(set(stored.model))]], ignore_index=True)
        where += f" and {args.stored}"
    claims = protocol.CLAIMS
    if args.subject:
        if args.subject not in set(results.model):
            raise BenchError(f"no runs of '{args.subject}' in {where}; its models are "
                             f"{', '.join(sorted(set(results[results.f.notna()].model)))}")
        claims = with_subject(args.subject)
    title = f"The paper's claims on {where}" + (f", with {args.subject} in CCVAE's place" if args.subject else "")
    rows = write_claims(results, out, title, claims, levels=read_levels())
    print(verdict_lines(rows, claims))
    print(f"wrote {out / 'claims.csv'} and {out / 'CLAIMS.md'}")


def command_check(args: argparse.Namespace) -> None:
    from bench import check, stored

    tolerances = check.parse_tolerances(args.tolerance)
    if args.update:
        only = tuple(args.update_datasets.split(",")) if args.update_datasets else None
        print(check.update(_runs_root(args), _stored(args), PAPER_CSV, only))
        return
    if args.restore:
        print(stored.restore(_stored(args), _runs_root(args)))
        return
    if args.power:
        print(check.power_report(stored.read_stored(_stored(args)), _stored(args)))
        return
    if args.calibrate:
        print(check.write_calibration(_stored(args).parent))
        return
    if args.sds is not None and args.sds <= 0:
        raise BenchError(f"--sds must be positive, got {args.sds:g}")
    checked = check.check(_runs_root(args), _stored(args), tolerances, sds=args.sds,
                          results=Path(args.results) if args.results else None)
    print(checked.report)
    checked.raise_for_regressions()


def command_reproduce(args: argparse.Namespace) -> None:
    from bench import check, sweep
    from bench.tables import table_spec

    spec = table_spec(args.table)
    outcomes = _sweep(args, _cells(args, spec.default_datasets), spec.evaluators)
    sweep.raise_for_failures(outcomes)
    _write_tables(_runs_root(args), Path(args.out), Path(args.paper), [spec.key])
    if not (_stored(args) / "results.csv").is_file():
        print(f"no stored results at {_stored(args)}: Table {spec.key} written, not checked")
        return
    checked = check.check(_runs_root(args), _stored(args), check.parse_tolerances(None), spec.metrics)
    print(checked.report)
    checked.raise_for_regressions()


def command_eval(args: argparse.Namespace) -> None:
    from bench.evaluate import evaluate_run
    from bench.train import resolve_device
    from evaluators import EVALUATORS

    EVALUATORS.chosen(args.only)
    if args.run_dir and args.model:
        raise BenchError("give a run directory or --model, not both")
    run_dir, data = (Path(args.run_dir), None) if args.run_dir else _external_run(args)
    for eval_seed in args.eval_seeds or [None]:
        evaluate_run(run_dir, resolve_device(args.device), args.only, args.data_root, args.cache_dir,
                     args.fid_weights, data=data, eval_seed=eval_seed)
    print(f"evaluated: {run_dir}")


def _external_run(args: argparse.Namespace):
    from bench.external import external_run
    from bench.train import resolve_device

    given = {"--model": args.model, "--checkpoint": args.checkpoint, "--dataset": args.dataset}
    if not any(given.values()):
        raise BenchError("give a run directory, or a model trained elsewhere with --model MODULE:CLASS "
                         "--checkpoint FILE --dataset NAME")
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise BenchError(f"evaluating a model trained elsewhere needs {', '.join(missing)} too")
    return external_run(args.model, args.checkpoint, args.dataset, args.preset, _options(args.dataset_option),
                        _options(args.model_option), args.name, args.f, _runs_root(args), resolve_device(args.device),
                        args.data_root, args.cache_dir, args.trust_checkpoint)


def command_oracle(args: argparse.Namespace) -> None:
    from bench.config import preset_dataset_options
    from bench.data import load
    from bench.presets import preset
    from bench.train import resolve_device
    from evaluators.oracle import load_or_train_oracle

    options = preset_dataset_options(args.preset, args.dataset, _options(args.dataset_option))
    data = load(args.dataset, args.data_root, args.cache_dir, options)
    _, record = load_or_train_oracle(data, options, resolve_device(args.device), args.cache_dir,
                                     preset(args.preset).oracle)
    print(f"{args.dataset} oracle: test accuracy {record['test_accuracy']:.3f} "
          f"(majority baseline {record['majority_accuracy']:.3f}; {record['config']['steps']} steps)")


def command_data(args: argparse.Namespace) -> None:
    from bench.data import describe_registry, load

    if args.list:
        print(describe_registry())
        return
    if not args.dataset:
        raise BenchError("say which data set with --dataset NAME, or --list to see them all")
    print(load(args.dataset, args.data_root, args.cache_dir, _options(args.dataset_option)).summary())


def command_perf(args: argparse.Namespace) -> None:
    from bench import perf
    from bench.evaluate import evaluator_selection
    from bench.models import default_models
    from bench.train import resolve_device

    settings = perf.PerfSettings(batch=args.batch, steps=args.steps, repeats=args.repeats,
                                 cached_images=max(4000, 2 * args.batch), eval_samples=args.eval_samples,
                                 step=_step_options(args))
    request = perf.PerfRequest(
        models=tuple(args.models or default_models()), evaluators=evaluator_selection(args.evaluators),
        settings=settings,
        out=Path(args.out) / "perf.csv", reference=Path(args.reference).expanduser() if args.reference else None,
        fid_weights=args.fid_weights, epoch_images=args.epoch_images, epoch_f=args.epoch_f, layers=args.layers,
        profile=args.profile)
    perf.run(request, resolve_device(args.device), show_progress=sys.stderr.isatty())


COMMANDS = {"train": command_train, "run": command_run, "tables": command_tables, "list": command_list,
            "claims": command_claims, "check": command_check,
            "reproduce": command_reproduce, "eval": command_eval, "oracle": command_oracle, "data": command_data,
            "perf": command_perf}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    tune_cpu_allocator()
    previous = signal.signal(signal.SIGTERM, _terminated)  # `kill PID`, `timeout`, a container stop: as Ctrl-C
    try:
        COMMANDS[args.command](args)
    except BenchError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _terminated(signum, frame) -> None:
    """SIGTERM anywhere in a command (before a sweep's first cell, while its tables are written): stop as Ctrl-C
    stops it, unwinding (temporary files removed, locks released) instead of dying where it stands."""
    raise KeyboardInterrupt
