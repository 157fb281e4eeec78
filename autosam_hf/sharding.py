"""Prediction and evaluation across the processes of `accelerate launch` (one process when not launched).

    accelerate launch --num_processes 2 -m autosam_hf.predict images/ --model runs/kvasir --output_dir out/
    accelerate launch --num_processes 2 -m autosam_hf.evaluation --model runs/kvasir --preset kvasir ...

Each process takes a contiguous share of the inputs (`shard`, accelerate's `split_between_processes`), whole groups
at a time: a video case's frames or a volume stay in one process, so that whatever is scored per group is scored as
in one process. Each process writes the outputs it makes (atomically, as everywhere); the scores are gathered once
(`gather`, accelerate's `gather_object`) and merged in process order (`merge_accumulators`), which is the inputs'
order, so the merged scores are those of one process, bit for bit. The main process alone shows progress and writes
reports.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

Item = TypeVar("Item")


def processes():
    """This run's processes: accelerate's `PartialState` (one process, rank 0, when not launched).

    `accelerate launch` on a CPU machine sets ACCELERATE_USE_CPU; a `PartialState` made without being told so sees
    one process in each of them, so it is passed on here."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


# Where launchers (torchrun, MPI) put the number of processes, as accelerate reads it.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def is_sharded() -> bool:
    """Whether this run has more than one process (read without building accelerate's state when not launched)."""
    return any(int(os.environ.get(name, "1")) > 1 for name in _WORLD_SIZE_VARIABLES)


def process_device(device: torch.device) -> torch.device:
    """The device of this process: `device`, except that in a launched run each process takes its own accelerator
    (`cuda:<local rank>`) where `device` names only the kind."""
    if not is_sharded() or device.index is not None or device.type == "cpu":
        return device
    own = processes().device
    return own if own.type == device.type else device


def is_main_process() -> bool:
    """Whether this process shows progress and writes reports (the only one when not launched)."""
    return not is_sharded() or processes().is_main_process


def shard(groups: Sequence[Sequence[Item]] | Sequence[Item], grouped: bool = False) -> list[Item]:
    """This process's contiguous share of `groups` (process 0 the first, each at most one more than another).

    With `grouped`, `groups` is a sequence of groups (lists of items) split whole and returned flattened."""
    groups = list(groups)
    if is_sharded():
        with processes().split_between_processes(groups) as share:
            groups = list(share)
    return [item for group in groups for item in group] if grouped else groups


def gather(value: Any) -> list[Any]:
    """Every process's `value`, in process order, on every process (`[value]` when not launched). A collective call:
    every process must make it."""
    if not is_sharded():
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def merge_accumulators(parts: Sequence[Any]) -> Any:
    """One metric accumulator holding what `parts` (accumulators of one class, each fed a share of the inputs, in
    input order) were fed, as if one had been fed everything.

    The rule is the accumulators' own: what `reset()` empties is data, appended per input (lists are concatenated,
    dicts keyed by case or image joined); what it leaves is configuration (kept from the first part). It holds for
    `autosam_hf.metrics`' accumulators and the pysodmetrics measures inside them, which keep per-image lists and
    average them only in `compute()`. An object without `reset` (a scoreboard of accumulators per mode) is merged
    attribute by attribute and key by key: accumulators as above, dicts joined, anything else kept from the first."""
    parts = list(parts)
    if not hasattr(parts[0], "reset"):
        return _merge_structure(parts)
    fresh = copy.deepcopy(parts[0])  # a deep copy: `reset` may empty lists in place
    fresh.reset()
    return _merge(parts, fresh)


def _merge_structure(parts: list[Any]) -> Any:
    first = parts[0]
    if hasattr(first, "reset"):
        return merge_accumulators(parts)
    if isinstance(first, dict):
        values: dict = {}
        for part in parts:
            for key, value in part.items():
                values.setdefault(key, []).append(value)
        return {key: _merge_structure(group) if len(group) > 1 else group[0] for key, group in values.items()}
    if hasattr(first, "__dict__") and not isinstance(first, type):
        merged = copy.copy(first)
        for name in vars(first):
            setattr(merged, name, _merge_structure([vars(part)[name] for part in parts]))
        return merged
    return first


def _merge(parts: list[Any], fresh: Any) -> Any:
    if isinstance(fresh, list) and not fresh:
        return [item for part in parts for item in part]
    if isinstance(fresh, dict) and not fresh:
        return _merge_structure(parts) if any(parts) else {}
    if isinstance(fresh, dict):
        return {key: _merge([part[key] for part in parts], value) for key, value in fresh.items()}
    if hasattr(fresh, "__dict__") and not isinstance(fresh, type):
        merged = copy.copy(fresh)
        for name, value in vars(fresh).items():
            setattr(merged, name, _merge([vars(part)[name] for part in parts], value))
        return merged
    return parts[0]


__all__ = ["gather", "is_main_process", "is_sharded", "merge_accumulators", "process_device", "processes", "shard"]
