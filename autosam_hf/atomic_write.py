"""Writing a file or a folder so that a crash or a kill never leaves half of it: write beside it, then rename; and
`BackgroundWriter`, which takes such writes off the loop that produces them (the cache build, `autosam-predict`)."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call `write(temporary)` on `.<name>.<pid>.tmp` next to `path`, then move it onto `path` (`os.replace`).

    The temporary name ends in `.tmp` whatever `path` is, so writers that infer a format from the suffix must be
    told it (e.g. `format="png"`). If `write` fails, the temporary file is removed and the error propagates.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder `new` to `target`, replacing what was there only once `new` is in place."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_folder_atomically(folder: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(staging)` on a new folder `.<name>.tmp-*` next to `folder`, then rename it to `folder`, replacing
    any folder there (callers decide whether replacing is allowed). Returns `folder`.

    If `write` fails, the staging folder is removed, `folder` is left as it was and the error propagates.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; the result is an ordinary folder
        write(staging)
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


class BackgroundWriter:
    """Runs the calls given to `submit` in order: inline, or (`background`) in one thread, with at most `in_flight`
    calls queued or running (`submit` waits for the oldest beyond that), so that an accelerator computes the next
    batch while the files of the last are written. A failed call's error is raised by the next `submit` or on
    leaving the block; leaving it on an error of its own cancels the calls not yet started.

    Use it as a context manager: `with BackgroundWriter(background) as writer: writer.submit(write, ...)`.
    """

    def __init__(self, background: bool, in_flight: int = 1, name: str = "autosam-writer"):
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        self.pool = concurrent.futures.ThreadPoolExecutor(1, name) if background else None
        self.in_flight = in_flight
        self.pending: collections.deque[concurrent.futures.Future] = collections.deque()

    def submit(self, function: Callable, *args) -> None:
        if self.pool is None:
            function(*args)
            return
        while self.pending and (self.pending[0].done() or len(self.pending) >= self.in_flight):
            self.pending.popleft().result()  # raises a failed call's error before more are queued
        self.pending.append(self.pool.submit(function, *args))

    def wait(self) -> None:
        """Wait for every call submitted so far; raise the first error."""
        while self.pending:
            self.pending.popleft().result()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is None:
            return
        try:
            if exc_info[0] is None:
                self.wait()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
