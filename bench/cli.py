"""Command line: python -m bench {train,run,eval,oracle,data}. User errors print one line, exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.errors import BenchError

DEFAULT_RUNS = "runs"


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
    _add_common(train)

    run = commands.add_parser("run", help="train and summarise a grid of runs")
    run.add_argument("--all", action="store_true", help="the whole default grid (restrict it with the options below)")
    run.add_argument("--datasets", type=_names, help="comma-separated (default synthfaces)")
    run.add_argument("--models", type=_names, help="comma-separated (default: all six registered models)")
    run.add_argument("--fs", type=_floats, help="comma-separated supervision rates (default 0.004,0.06,0.2,1)")
    run.add_argument("--seeds", type=_ints, help="comma-separated (default 0)")
    run.add_argument("--epochs", type=int, help="override the preset's epochs (a different run identity)")
    _add_common(run)

    run.add_argument("--no-eval", action="store_true", help="train only; skip the evaluators")
    run.add_argument("--fid-weights", help="pytorch-fid Inception weights file (default: torch's hub cache)")

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

    data = commands.add_parser("data", help="decode and cache a data set, and describe it")
    data.add_argument("--dataset", required=True)
    data.add_argument("--dataset-option", action="append", metavar="NAME=VALUE")
    data.add_argument("--data-root")
    data.add_argument("--cache-dir")
    data.add_argument("--debug", action="store_true")
    return parser


def _runs_root(args: argparse.Namespace) -> Path:
    return Path(args.runs) if args.runs else Path(DEFAULT_RUNS) / args.preset


def command_train(args: argparse.Namespace) -> None:
    from bench.config import make_config
    from bench.data import load
    from bench.train import resolve_device, train

    config = make_config(args.model, args.dataset, args.f, args.seed, args.preset, args.epochs,
                         _options(args.model_option), _options(args.dataset_option))
    device = resolve_device(args.device)
    data = load(config.dataset, args.data_root, args.cache_dir, config.dataset_options)
    run_dir = config.run_dir(_runs_root(args))
    metrics = train(config, data, run_dir, device, checkpoint_every=args.checkpoint_every)
    print(f"{run_dir}: test accuracy {metrics['test_accuracy']:.3f} "
          f"(majority baseline {metrics['majority_accuracy']:.3f})")


def command_run(args: argparse.Namespace) -> None:
    from bench import sweep

    restricted = any(getattr(args, name) for name in ("datasets", "models", "fs", "seeds"))
    if not (args.all or restricted):
        raise BenchError("say --all for the whole default grid, or choose cells with --models/--datasets/--fs/--seeds")
    grid = sweep.Grid(
        datasets=tuple(args.datasets or sweep.DEFAULT_DATASETS), models=tuple(args.models or sweep.DEFAULT_MODELS),
        fs=tuple(args.fs or sweep.DEFAULT_FS), seeds=tuple(args.seeds or sweep.DEFAULT_SEEDS), preset=args.preset,
        epochs=args.epochs,
    )
    runs_root = _runs_root(args)
    results = sweep.run_grid(grid, runs_root, args.data_root, args.cache_dir, args.device,
                             evaluate=not args.no_eval, fid_weights=args.fid_weights)
    sweep.print_summary(results, runs_root)


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


COMMANDS = {"train": command_train, "run": command_run, "eval": command_eval, "oracle": command_oracle,
            "data": command_data}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
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
