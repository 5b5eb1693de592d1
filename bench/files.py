"""Writing files safely: atomic writes (temporary name, fsync, then rename) and file locks.

A reader never sees a half-written file, a crash never leaves one under the final name, and two
processes never build, train or write the same thing at once. Locks are flock where it works: held
by an open file descriptor and released by the kernel when its process ends, so a killed sweep
leaves no stale lock behind (the empty lock files may stay on disk). On network filesystems (NFS,
Lustre, GPFS…), where flock is refused, node-local or silently a no-op, and wherever flock fails,
they are lock files created atomically, with their owner and a heartbeat, so that a stale one (a
dead process, a crashed node) is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

import torch

T = TypeVar("T")

NETWORK_FILESYSTEMS = {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "beegfs", "ceph", "fuse.sshfs", "9p"}
"""Where flock cannot be trusted across nodes (GPFS: node-local; Lustre: refused without -o flock; NFS with
nolock: silently local), so lock files are used instead."""
HEARTBEAT_SECONDS = 30.0  # a lock file's holder touches it this often ...
STALE_SECONDS = 300.0  # ... so one untouched for this long belongs to a dead process (on any host)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it in /proc/self/mounts)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    found = [(point, kind) for point, kind in mounts if target == point or target.startswith(point.rstrip("/") + "/")]
    return max(found, key=lambda item: len(item[0]))[1] if found else "unknown"


def lock_kind(path: Path) -> str:
    """"flock" or "file" (lock files): $BENCH_LOCKS when set, else lock files on network filesystems."""
    chosen = os.environ.get("BENCH_LOCKS")
    if chosen in ("flock", "file"):
        return chosen
    return "file" if filesystem_type(path.parent) in NETWORK_FILESYSTEMS else "flock"


@contextmanager
def exclusive(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on `path` for the block.

    With `wait=False` the block runs at once and receives False when another process holds
    the lock (and True when this one got it); with `wait=True` it waits and receives True.
    flock where it works (`lock_kind`); where the filesystem refuses it, or cannot be trusted with it, a lock
    file (`file_lock`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if lock_kind(path) == "file":
        with file_lock(path, wait) as held:
            yield held
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError as error:  # flock refused here (ENOLCK, EOPNOTSUPP…): lock files instead
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            with file_lock(path, wait) as held:
                yield held
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextmanager
def file_lock(path: Path, wait: bool = True, poll_seconds: float = 0.5) -> Iterator[bool]:
    """A lock that needs no flock: `<path>.owner`, created with O_CREAT | O_EXCL (atomic on every filesystem,
    NFS v3 and later included), holding the owner's host and pid, and touched every `HEARTBEAT_SECONDS` while
    held. A lock file whose owner is a dead process on this host, or that nobody touched for `STALE_SECONDS`
    (a crashed host), is stale: it is taken over (renamed away first, so only one process takes it)."""
    owner = path.with_name(path.name + ".owner")
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
    while True:
        try:
            descriptor = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _stale(owner):
                _take_over(owner)
                continue
            if not wait:
                yield False
                return
            time.sleep(poll_seconds)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(record)
        break
    stop = threading.Event()
    heartbeat = threading.Thread(target=_touch_until, args=(owner, stop), daemon=True)
    heartbeat.start()
    try:
        yield True
    finally:
        stop.set()
        heartbeat.join()
        owner.unlink(missing_ok=True)


def _touch_until(owner: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        with contextlib.suppress(OSError):
            os.utime(owner)


def _stale(owner: Path) -> bool:
    try:
        held = json.loads(owner.read_text() or "{}")
        age = time.time() - owner.stat().st_mtime
    except (OSError, json.JSONDecodeError):
        return False  # being written or just released: look again
    if held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int):
        try:
            os.kill(held["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
    return age > STALE_SECONDS


def _take_over(owner: Path) -> None:
    """Remove a stale lock file; of several processes doing so at once, one renames it away, the others find
    it gone."""
    with contextlib.suppress(FileNotFoundError):
        stale = owner.with_name(f"{owner.name}.stale.{os.getpid()}")
        os.rename(owner, stale)
        stale.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary name beside `path`, then rename it into place (`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def cached_build(path: Path, build: Callable[[], T], save: Callable[[T, Path], None], load: Callable[[Path], T],
                 what: str) -> T:
    """The one way a cache is read or made: under an exclusive lock on `path` (two processes build it once; the
    second waits, then reads), `load(path)` where it exists; else, or where it cannot be read (truncated, from
    another version, foreign), `build()` and `save(value, path)` (atomic writes). A file that cannot be read is
    reported in one line on stderr and rebuilt. `path`'s name is the cache key: the caller derives it from every
    input that determines the result."""
    import sys

    with exclusive(path.with_name(f".{path.name}.lock")):
        if path.exists():
            try:
                return load(path)
            except Exception as error:  # a truncated, foreign or stale file: rebuild it
                print(f"warning: the cached {what} {path} cannot be read ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); rebuilding it", file=sys.stderr)
                path.unlink(missing_ok=True)
        value = build()
        save(value, path)
        return value


class UntrustedFile(Exception):
    """A torch file that holds more than tensors and plain containers: loading it would run the code it names."""


class UnreadableFile(Exception):
    """Bytes torch cannot read as a checkpoint at all (corrupt, truncated, not a torch file)."""


def load_tensors(path: Path, map_location: str | torch.device | None = None, trust: bool = False) -> object:
    """torch.load that runs no code from the file: tensors, numbers, strings and containers of them only
    (`weights_only=True`, torch's restricted unpickler). A readable pickle that names a class or callable (a
    pickled module) raises `UntrustedFile`, unless `trust` says the file's code may run (`weights_only=False`);
    bytes that are no torch file at all raise `UnreadableFile` (torch's advice to turn weights_only off is not
    passed on: it would not help, and would run whatever the bytes hold)."""
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as error:
        named = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line]
        if named and not trust:
            raise UntrustedFile(named[0].split("WeightsUnpickler error: ")[-1].split(". Please")[0]) from None
        raise UnreadableFile(f"{path} is not a checkpoint torch can read (corrupt, truncated or not a torch "
                             "file)") from None
    except (RuntimeError, EOFError) as error:
        if "PytorchStreamReader" in str(error) or isinstance(error, EOFError):
            raise UnreadableFile(f"{path} is not a checkpoint torch can read (a damaged zip archive: "
                                 "corrupt or truncated)") from None
        raise


def atomic_torch_save(obj: object, path: Path) -> None:
    """torch.save to a temporary name beside `path`, then rename it into place (`atomic_write`)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write` into a temporary file beside `path`, flushed to disk (fsync), renamed into place, and the rename
    itself flushed (fsync of the folder): after a crash at any point `path` holds the old content or the new
    one, never an empty or partial file. A failed write removes its temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
