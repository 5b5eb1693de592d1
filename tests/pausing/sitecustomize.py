"""Test-only: make every Python process of a sweep (the main process and its spawned workers) stop and wait at one
chosen point, so that a test can signal the sweep in that state deterministically (tests/test_interrupt.py).

Active only where BENCH_TEST_PAUSE names the point (this folder first on PYTHONPATH): the process writes
`<BENCH_TEST_PAUSE_DIR>/<point>.<pid>` there and sleeps until a signal ends it. Points:
    start      the main process, before any cell (bench.sweep.load_each_dataset)
    oracle     a worker building the oracle, its cache lock held (evaluators.oracle.train_oracle)
    lock       one worker building the oracle (as `oracle`) while the other, its cell trained, is about to wait on
               the oracle's cache lock (bench.files.exclusive with wait=True on it marks `lock.<pid>`)
    training   a worker in the middle of a cell, at its third optimiser step (bench.train.TrainingStep)
    tables     the main process writing its outputs, after results.csv, before REPORT.md (atomic_write_text)
"""

import os

POINT, FOLDER = os.environ.get("BENCH_TEST_PAUSE"), os.environ.get("BENCH_TEST_PAUSE_DIR")


def pause(point: str) -> None:
    import pathlib
    import time

    pathlib.Path(FOLDER, f"{point}.{os.getpid()}").write_text(point)
    while True:
        time.sleep(0.05)


if POINT and FOLDER:
    import contextlib

    import bench.files

    if POINT == "lock":
        exclusive = bench.files.exclusive

        @contextlib.contextmanager
        def marked(path, wait=True):
            if wait and ".oracle-" in path.name:
                import pathlib

                pathlib.Path(FOLDER, f"lock.{os.getpid()}").write_text(str(path))
            with exclusive(path, wait) as held:
                yield held

        bench.files.exclusive = marked
        import evaluators.oracle

        evaluators.oracle.train_oracle = lambda *args, **kwargs: pause("oracle")
    elif POINT == "tables":
        write = bench.files.atomic_write_text

        def paused_after_the_results_file(path, text, *args, **kwargs):
            write(path, text, *args, **kwargs)
            if path.name == "results.csv" and path.parent.name == "results":  # --out's results.csv, REPORT.md next
                pause("tables")

        bench.files.atomic_write_text = paused_after_the_results_file
    elif POINT == "start":
        import bench.sweep

        bench.sweep.load_each_dataset = lambda *args, **kwargs: pause("start")
    elif POINT == "oracle":
        import evaluators.oracle

        evaluators.oracle.train_oracle = lambda *args, **kwargs: pause("oracle")
    elif POINT == "training":
        import bench.train

        step = bench.train.TrainingStep.__call__
        calls = []

        def paused_step(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                pause("training")
            return step(self, *args, **kwargs)

        bench.train.TrainingStep.__call__ = paused_step
