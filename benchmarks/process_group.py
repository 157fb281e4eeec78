"""Run a command in a process group of its own, and leave nothing behind.

Launchers (accelerate, torchrun) and data-loader workers start children of their own: killing only the direct
child on a time-out would leave them running, eating the CPU of whatever comes next. The benchmarks and the tests
that start processes use this one function.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group has already gone
        pass


def run_command(
    command: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run `command` (`input` on its stdin, output captured as text) in a new session.

    On a time-out or an interruption its whole process group is killed, then the error re-raised; children still
    alive when it exits are killed too."""
    process = subprocess.Popen(
        list(command),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        raise subprocess.TimeoutExpired(process.args, timeout, stdout, stderr) from None
    except BaseException:  # KeyboardInterrupt, a failing test's teardown, ...
        _kill_group(process)
        process.communicate()
        raise
    _kill_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
