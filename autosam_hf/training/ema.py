"""An exponential moving average (EMA) of the trained weights, `--ema_decay`: validated, kept and saved in place of
the last step's weights, which carry the last batches' noise.

Only the parts a stage trains are averaged (g and/or h, with their BatchNorm statistics), never the frozen SAM, so
the copy costs g's and h's size. The decay warms up as in TensorFlow's `ExponentialMovingAverage(num_updates=...)`:
after n updates it is min(decay, (1 + n) / (10 + n)), so early averages do not hold on to the random start (with a
fixed 0.999, the initial weights would still weigh 0.999^1000 = 37% after 1,000 steps) and the window grows with
the run (about its last 10% until it reaches 1 / (1 - decay) steps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from accelerate.utils import broadcast
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..model import AutoSamForSegmentation


def warmed_up_decay(decay: float, num_updates: int) -> float:
    """The decay of the update after `num_updates` earlier ones (see the module docstring)."""
    return min(decay, (1 + num_updates) / (10 + num_updates))


def warmed_up_ema_update(decay: float):
    """`AveragedModel`'s `multi_avg_fn`: one EMA step over a group of same-dtype tensors."""

    @torch.no_grad()
    def update(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], num_updates: torch.Tensor) -> None:
        step_decay = warmed_up_decay(decay, int(num_updates))
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, 1.0 - step_decay)
            else:  # BatchNorm's batch counter: a count, not a quantity to average
                average.copy_(value)

    return update


class WeightAverage:
    """The EMA of `model`'s parts named in `parts` (`prompt_generator`, `surrogate_decoder`)."""

    def __init__(self, model: AutoSamForSegmentation, parts: Sequence[str], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema_decay must lie strictly between 0 and 1, got {decay}")
        self.parts = tuple(parts)
        self.averaged = AveragedModel(self._trained(model), multi_avg_fn=warmed_up_ema_update(decay), use_buffers=True)

    def _trained(self, model: AutoSamForSegmentation) -> nn.ModuleDict:
        return nn.ModuleDict({name: getattr(model, name) for name in self.parts})

    @property
    def num_updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: AutoSamForSegmentation) -> None:
        """After an optimizer step (the first update copies the weights)."""
        self.averaged.update_parameters(self._trained(model))

    def share_main_process_statistics(self) -> None:
        """With several processes: every process takes process 0's averaged BatchNorm statistics. The weights agree
        across processes after a step, BatchNorm's running statistics do not (each process's come from its own batch;
        DDP re-syncs the model's from process 0 only at the next forward), so neither would their averages."""
        buffers = list(self.averaged.module.buffers())
        # torch.distributed broadcasts in place, XLA returns copies: copying back serves both.
        for buffer, synced in zip(buffers, broadcast(buffers, from_process=0), strict=True):
            buffer.copy_(synced)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averages (`module.<part>.…`) and the update count (`n_averaged`), for checkpoints."""
        return {name: tensor.detach().cpu().contiguous() for name, tensor in self.averaged.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)

    @contextmanager
    def applied_to(self, model: AutoSamForSegmentation) -> Iterator[None]:
        """Within the block `model`'s trained parts hold the averages; the trained weights come back after it."""
        trained = self._trained(model)
        kept = {name: tensor.detach().clone() for name, tensor in trained.state_dict().items()}
        trained.load_state_dict(self.averaged.module.state_dict())
        try:
            yield
        finally:
            trained.load_state_dict(kept)
