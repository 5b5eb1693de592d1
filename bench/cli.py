"""Command line: python -m bench {train,run,tables,check,reproduce,eval,oracle,data}.

User errors print one line and exit with code 2; a regression or a failed cell exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.errors import BenchError, Regression
from bench.runtime import tune_cpu_allocator

DEFAULT_RUNS = "runs"
PAPER_CSV = Path("results") / "paper.csv"
STORED = Path("results") / "stored"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with the fix: see --help) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", help="folder holding the data set's files (CelebA, CheXpert, MNIST)")
    parser.add_argument("--cache-dir", help="decoded-data cache (default $BENCH_CACHE or ~/.cache/ccvae-bench)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--runs", help="runs directory (default runs/<preset>)")
    parser.add_argument("--preset", default="quick", help="smoke, quick (default) or paper")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train one model on one data set at one supervision rate")
    train.add_argument("--model", required=True, help="a registered name (ccvae, mccvae) or module:Class")
    train.add_argument("--dataset", default="synthfaces")
    train.add_argument("--f", type=float, default=1.0, help="supervision rate in (0, 1]")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, help="override the preset's epochs")
    train.add_argument("--model-option", action="append", metavar="NAME=VALUE", help="e.g. latents_per_label=3")
    train.add_argument("--dataset-option", action="append", metavar="NAME=VALUE", help="e.g. uncertain=zeros")
    train.add_argument("--checkpoint-every", type=int, default=200, help="steps between mid-epoch checkpoints")
    _add_step(train)
    _add_common(train)

    run = commands.add_parser("run", help="train, evaluate and tabulate a grid of runs")
    run.add_argument("--all", action="store_true", help="the whole default grid (restrict it with the options below)")
    _add_grid(run)
    run.add_argument("--dry-run", action="store_true", help="list the cells and which are done; run nothing")
    run.add_argument("--no-eval", action="store_true", help="train only; skip the evaluators")

    tables = commands.add_parser("tables", help="gather every run directory into the paper's tables")
    tables.add_argument("--runs", help="runs directory (default runs/<preset>)")
    tables.add_argument("--preset", default="quick", help="only used for the default --runs")
    tables.add_argument("--out", default="results", help="where tables/ and REPORT.md go (default results)")
    tables.add_argument("--paper", default=str(PAPER_CSV), help=f"the paper's numbers (default {PAPER_CSV})")
    tables.add_argument("--debug", action="store_true", help="show tracebacks")

    check = commands.add_parser("check", help="compare fresh results with stored ones; exit 1 on a regression")
    check.add_argument("--runs", help="runs directory (default runs/<preset>)")
    check.add_argument("--preset", default="quick", help="picks the default --runs and --stored")
    check.add_argument("--stored", help="stored result set (default results/stored/<preset>)")
    check.add_argument("--tolerance", action="append", metavar="NUMBER|METRIC=NUMBER",
                       help="a number scales every default tolerance; METRIC=NUMBER sets one absolute tolerance")
    check.add_argument("--update", action="store_true", help="store the fresh results instead of comparing")
    check.add_argument("--debug", action="store_true", help="show tracebacks")

    reproduce = commands.add_parser("reproduce", help="the cells and evaluators of one table: run, tabulate, check")
    reproduce.add_argument("--table", required=True, help="1, 2, 4, 5, 6, 7, C or G")
    _add_grid(reproduce)
    reproduce.add_argument("--stored", help="stored result set (default results/stored/<preset>)")

    evaluate = commands.add_parser("eval", help="run the evaluators on a trained run directory")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="e.g. runs/quick/synthfaces/ccvae/f=0.06/seed=0")
    evaluate.add_argument("--only", type=_names, help="comma-separated evaluators (default all)")
    evaluate.add_argument("--fid-weights", help="pytorch-fid Inception weights file (default: torch's hub cache)")
    evaluate.add_argument("--data-root")
    evaluate.add_argument("--cache-dir")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--debug", action="store_true")

    oracle = commands.add_parser("oracle", help="train (once, cached) or show a data set's oracle classifier")
    oracle.add_argument("--dataset", required=True)
    oracle.add_argument("--preset", default="quick", help="data set size and oracle steps of this preset")
    oracle.add_argument("--dataset-option", action="append", metavar="NAME=VALUE")
    oracle.add_argument("--data-root")
    oracle.add_argument("--cache-dir")
    oracle.add_argument("--device", default="auto")
    oracle.add_argument("--debug", action="store_true")

    perf = commands.add_parser("perf", help="images per second of training steps, data pipeline and evaluators")
    perf.add_argument("--models", type=_names, help="comma-separated (default: all six registered models)")
    perf.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
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
    perf.add_argument("--fid-weights", help="pytorch-fid Inception weights file (default: torch's hub cache)")
    perf.add_argument("--no-layers", dest="layers", action="store_false",
                      help="skip timing bench.layers' layers beside torch's")
    perf.add_argument("--out", default="results/perf.csv", help="CSV to write (default results/perf.csv)")
    perf.add_argument("--profile", action="store_true",
                      help="also profile every timed step by operator (torch.profiler) into <out>-profile.csv")
    _add_step(perf)
    perf.add_argument("--debug", action="store_true", help="show tracebacks")

    data = commands.add_parser("data", help="decode and cache a data set, and describe it")
    data.add_argument("--dataset", required=True)
    data.add_argument("--dataset-option", action="append", metavar="NAME=VALUE")
    data.add_argument("--data-root")
    data.add_argument("--cache-dir")
    data.add_argument("--debug", action="store_true")
    return parser


def _add_grid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", type=_names, help="comma-separated (default synthfaces, and fashion-mnist "
                                                        "where its files are found)")
    parser.add_argument("--models", type=_names, help="comma-separated (default: all six registered models)")
    parser.add_argument("--fs", type=_floats, help="comma-separated supervision rates (default 0.004,0.06,0.2,1)")
    parser.add_argument("--seeds", type=_ints, help="comma-separated (default 0)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs (a different run identity)")
    parser.add_argument("--launcher", default="local", help="local (default: --jobs processes), inline or slurm")
    parser.add_argument("--jobs", type=int, default=2,
                        help="parallel processes (local; default 2) or array tasks at once (slurm)")
    parser.add_argument("--slurm-partition", help="Slurm partition (default: the cluster's)")
    parser.add_argument("--slurm-minutes", type=int, default=240, help="time limit per cell (default 240)")
    parser.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per cell (default 1)")
    parser.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per cell (default 8)")
    parser.add_argument("--fid-weights", help="pytorch-fid Inception weights file (default: torch's hub cache)")
    parser.add_argument("--out", default="results", help="where tables/ and REPORT.md go (default results)")
    _add_step(parser)
    _add_common(parser)


def _add_step(parser: argparse.ArgumentParser) -> None:
    """How training steps run (bench.config.StepOptions; part of a run's identity)."""
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep NCHW memory format (default: channels-last)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's loss")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs, AMX CPUs)")


def _step_options(args: argparse.Namespace):
    from bench.config import StepOptions

    return StepOptions(channels_last=args.channels_last, compile=args.compile, bf16=args.bf16)


def _runs_root(args: argparse.Namespace) -> Path:
    return Path(args.runs) if args.runs else Path(DEFAULT_RUNS) / args.preset


def command_train(args: argparse.Namespace) -> None:
    from bench.config import make_config
    from bench.data import load
    from bench.train import resolve_device, train

    config = make_config(args.model, args.dataset, args.f, args.seed, args.preset, args.epochs,
                         _options(args.model_option), _options(args.dataset_option), _step_options(args))
    device = resolve_device(args.device)
    data = load(config.dataset, args.data_root, args.cache_dir, config.dataset_options)
    run_dir = config.run_dir(_runs_root(args))
    metrics = train(config, data, run_dir, device, checkpoint_every=args.checkpoint_every)
    print(f"{run_dir}: test accuracy {metrics['test_accuracy']:.3f} "
          f"(majority baseline {metrics['majority_accuracy']:.3f})")


def _grid(args: argparse.Namespace, datasets: tuple[str, ...] | None = None):
    from bench import sweep

    grid = sweep.Grid(
        datasets=tuple(args.datasets or datasets or sweep.default_datasets(args.data_root)),
        models=tuple(args.models or sweep.DEFAULT_MODELS), fs=tuple(args.fs or sweep.DEFAULT_FS),
        seeds=tuple(args.seeds or sweep.DEFAULT_SEEDS), preset=args.preset, epochs=args.epochs,
        step=_step_options(args),
    )
    return grid, grid.cells()  # cells() validates every choice before any work starts


def _sweep(args: argparse.Namespace, cells: list, evaluators: tuple[str, ...] | None) -> list:
    """Run the cells with the chosen launcher; their outcomes."""
    from bench import sweep
    from bench.data import load

    if args.launcher not in sweep.LAUNCHERS:
        raise BenchError(f"unknown --launcher '{args.launcher}'; choose one of {', '.join(sweep.LAUNCHERS)}")
    runs_root = _runs_root(args)
    sweep.prepare_runs_root(runs_root)
    settings = sweep.CellSettings(args.data_root, args.cache_dir, args.device, evaluators, args.fid_weights)
    if args.launcher == "slurm":
        slurm = sweep.SlurmSettings(args.slurm_partition, args.slurm_minutes, args.slurm_gpus, args.slurm_cpus,
                                    args.jobs)
        outcomes = sweep.launch_slurm(cells, runs_root, settings, sweep.slurm_executor(runs_root, slurm))
    elif args.launcher == "local":
        from bench.evaluate import prepare
        from bench.train import resolve_device

        for config in {(c.dataset, json.dumps(c.dataset_options, sort_keys=True)): c for c in cells}.values():
            data = load(config.dataset, args.data_root, args.cache_dir, config.dataset_options)  # fail early
            if evaluators != ():
                prepare(config, data, resolve_device(args.device), args.cache_dir, evaluators)
        outcomes = sweep.launch_local(cells, runs_root, settings, args.jobs)
    else:
        outcomes = sweep.launch_inline(cells, runs_root, settings)
    print(sweep.summarise(outcomes), file=sys.stderr)
    return outcomes


def _raise_for_failures(outcomes: list) -> None:
    from bench import sweep

    if any(outcome.state == "failed" for outcome in outcomes):
        raise Regression(sweep.summarise(outcomes))


def _write_tables(runs_root: Path, out: Path, keys: list[str] | None = None):
    from bench.tables import gather, write_tables

    results = gather(runs_root)
    write_tables(results, runs_root, out, PAPER_CSV, keys)
    print(f"tables: {out / 'tables'}; report: {out / 'REPORT.md'}", file=sys.stderr)
    return results


def command_run(args: argparse.Namespace) -> None:
    from bench import sweep

    restricted = any(getattr(args, name) for name in ("datasets", "models", "fs", "seeds"))
    if not (args.all or restricted):
        raise BenchError("say --all for the whole default grid, or choose cells with --models/--datasets/--fs/--seeds")
    _, cells = _grid(args)
    evaluators = () if args.no_eval else None
    if args.dry_run:
        print(sweep.dry_run(cells, _runs_root(args), evaluators))
        return
    outcomes = _sweep(args, cells, evaluators)
    if any(outcome.state == "done" for outcome in outcomes):
        _print_accuracy(_write_tables(_runs_root(args), Path(args.out)))
    _raise_for_failures(outcomes)


def _print_accuracy(results) -> None:
    from bench.tables import TableSpec, read_paper, table_frame, to_markdown

    spec = TableSpec("A", "test accuracy", ("test_accuracy",), (), reference_row="majority_accuracy")
    for dataset in sorted(set(results.dataset)):
        frame = table_frame(results, dataset, spec, read_paper(PAPER_CSV))
        print(f"\n{dataset}: test accuracy beside the majority-class baseline\n{to_markdown(frame, spec)}")


def command_tables(args: argparse.Namespace) -> None:
    from bench.tables import gather, write_tables

    runs_root = _runs_root(args)
    written = write_tables(gather(runs_root), runs_root, Path(args.out), Path(args.paper))
    print(f"wrote {len(written)} files; report: {Path(args.out) / 'REPORT.md'}")


def _tolerances(values: list[str] | None):
    from bench.check import tolerances_with

    scale, overrides = None, {}
    for value in values or []:
        name, sep, number = value.rpartition("=") if "=" in value else ("", "", value)
        try:
            parsed = float(number)
        except ValueError:
            raise BenchError(f"--tolerance '{value}' must be a number or METRIC=NUMBER") from None
        if sep:
            overrides[name] = parsed
        else:
            scale = parsed
    return tolerances_with(overrides, scale)


def _check(runs_root: Path, stored_dir: Path, tolerances, metrics: tuple[str, ...] | None = None) -> None:
    from bench import check
    from bench.tables import gather

    fresh, stored = gather(runs_root), check.read_stored(stored_dir)
    if metrics:
        fresh, stored = fresh[fresh.metric.isin(metrics)], stored[stored.metric.isin(metrics)]
    cells = ["dataset", "model", "f", "seed"]
    not_run = len(stored[cells].drop_duplicates().merge(fresh[cells].drop_duplicates(), how="left",
                                                        indicator=True).query("_merge == 'left_only'"))
    comparison = check.compare(stored, fresh, tolerances)
    print(f"{runs_root} against {stored_dir}:\n{check.report(comparison, not_run)}")
    failing = check.regressions(comparison)
    if len(failing):
        names = [f"{row.dataset}/{row.model}/f={row.f:g} {row.metric}" for row in failing.itertuples()]
        raise Regression(f"{len(failing)} regression(s) beyond tolerance: {', '.join(names)}")


def command_check(args: argparse.Namespace) -> None:
    from bench import check
    from bench.tables import gather, write_tables

    runs_root = _runs_root(args)
    stored_dir = Path(args.stored) if args.stored else STORED / args.preset
    tolerances = _tolerances(args.tolerance)
    if args.update:
        fresh = gather(runs_root)
        check.store(fresh, runs_root, stored_dir)
        write_tables(fresh, runs_root, stored_dir, PAPER_CSV, figures=False)  # the stored tables, to read
        print(f"stored {len(fresh)} numbers and their tables in {stored_dir}")
        return
    _check(runs_root, stored_dir, tolerances)


def command_reproduce(args: argparse.Namespace) -> None:
    from bench.tables import table_spec

    spec = table_spec(args.table)
    _, cells = _grid(args, spec.default_datasets)
    outcomes = _sweep(args, cells, spec.evaluators)
    _raise_for_failures(outcomes)
    _write_tables(_runs_root(args), Path(args.out), [spec.key])
    stored_dir = Path(args.stored) if args.stored else STORED / args.preset
    if not (stored_dir / "results.csv").is_file():
        print(f"no stored results at {stored_dir}: Table {spec.key} written, not checked")
        return
    _check(_runs_root(args), stored_dir, _tolerances(None), spec.metrics)


def command_eval(args: argparse.Namespace) -> None:
    from bench.evaluate import check_names, evaluate_run
    from bench.train import resolve_device

    check_names(args.only)
    evaluate_run(Path(args.run_dir), resolve_device(args.device), args.only, args.data_root, args.cache_dir,
                 args.fid_weights)


def command_oracle(args: argparse.Namespace) -> None:
    from bench.config import preset
    from bench.data import dataset_options, load
    from bench.train import resolve_device
    from evaluators.oracle import OracleConfig, load_or_train_oracle

    chosen = preset(args.preset)
    options = dataset_options(args.dataset, {**chosen.dataset_overrides.get(args.dataset, {}),
                                             **_options(args.dataset_option)})
    data = load(args.dataset, args.data_root, args.cache_dir, options)
    _, record = load_or_train_oracle(data, options, resolve_device(args.device), args.cache_dir,
                                     OracleConfig.for_preset(chosen.name))
    print(f"{args.dataset} oracle: test accuracy {record['test_accuracy']:.3f} "
          f"(majority baseline {record['majority_accuracy']:.3f}; {record['config']['steps']} steps)")


def command_data(args: argparse.Namespace) -> None:
    from bench.data import load

    data = load(args.dataset, args.data_root, args.cache_dir, _options(args.dataset_option))
    print(data.summary())


def command_perf(args: argparse.Namespace) -> None:
    from tabulate import tabulate

    from bench import perf, sweep
    from bench.data import check_rate
    from bench.evaluate import check_names
    from bench.registry import entry
    from bench.train import resolve_device

    models = list(args.models or sweep.DEFAULT_MODELS)
    for model in models:
        entry(model)  # an unknown name is one line before any work
    evaluators = [] if args.evaluators == ["none"] else check_names(args.evaluators)
    for name, value in (("--batch", args.batch), ("--steps", args.steps), ("--repeats", args.repeats),
                        ("--eval-samples", args.eval_samples)):
        if value < 1:
            raise BenchError(f"{name} {value} must be at least 1")
    if args.epoch_images < 0:
        raise BenchError(f"--epoch-images {args.epoch_images} must be 0 (off) or a number of images")
    check_rate(args.epoch_f)
    reference = Path(args.reference).expanduser() if args.reference else None
    if reference is not None:
        perf.check_reference(reference)
    settings = perf.PerfSettings(batch=args.batch, steps=args.steps, repeats=args.repeats,
                                 cached_images=max(4000, 2 * args.batch), eval_samples=args.eval_samples,
                                 step=_step_options(args))
    device = resolve_device(args.device)
    frame = perf.measure(models, device, settings, evaluators,
                         reference, args.fid_weights,
                         show_progress=sys.stderr.isatty(), epoch_images=args.epoch_images, epoch_f=args.epoch_f,
                         with_layers=args.layers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from bench.files import atomic_write_text

    atomic_write_text(out, frame.to_csv(index=False))
    shown = [c for c in ("model", "mode", "implementation", "device", "batch", "images_per_s", "vs_authors",
                         "vs_torch", "gflop_per_s", "share_of_step", "unit", "note") if c in frame]
    print(tabulate(frame[shown].astype(object).fillna(""), headers="keys", tablefmt="github", showindex=False))
    first = frame.iloc[0]
    print(f"{first.machine}, {first.cpu_threads} threads (float32 matmul {first.matmul_gflop_per_s} GFLOP/s), "
          f"torch {first.torch}, allocator {first.allocator}; written to {out}")
    if args.profile:
        operators = perf.profile_steps(models, device, settings, reference)
        profile_out = out.with_name(f"{out.stem}-profile.csv")
        atomic_write_text(profile_out, operators.to_csv(index=False))
        for (model, mode, implementation), step in operators.groupby(["model", "mode", "implementation"], sort=False):
            slowest = ", ".join(f"{row.operator} {row.share:.0%}" for row in step.head(3).itertuples())
            print(f"{model} {mode} ({implementation}): {step.ms_per_step.sum():.0f} ms of operators per step, "
                  f"convolutions {perf.convolution_share(step):.0%}; slowest: {slowest}")
        print(f"operators per step written to {profile_out}")


COMMANDS = {"train": command_train, "run": command_run, "tables": command_tables, "check": command_check,
            "reproduce": command_reproduce, "eval": command_eval, "oracle": command_oracle, "data": command_data,
            "perf": command_perf}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    tune_cpu_allocator()
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
    return 0
