"""Writing a file so that a crash or a kill never leaves half of it: write beside it, then rename over it."""

from __future__ import annotations

import os
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
