"""Run by `test_ema.py` under `accelerate launch` with two processes: each process trains a BatchNorm on batches of
its own, folds the step into a `WeightAverage` and shares process 0's statistics; each then writes its model's and its
average's statistics to `<output_dir>/process<i>.safetensors`."""

import sys

import torch
from accelerate import Accelerator, PartialState
from safetensors.torch import save_file
from torch import nn

from autosam_hf.training.ema import WeightAverage


class WithPromptGenerator(nn.Module):
    """Holds what WeightAverage averages under g's name: a convolution and a BatchNorm."""

    def __init__(self):
        super().__init__()
        self.prompt_generator = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def main(output_dir: str) -> None:
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = WithPromptGenerator()
    average = WeightAverage(model, ["prompt_generator"], decay=0.5)
    # Each process sees its own batches: its BatchNorm's running statistics differ from the other's.
    generator = torch.Generator().manual_seed(1 + accelerator.process_index)
    for _ in range(3):
        model.prompt_generator(torch.randn(2, 3, 5, 5, generator=generator) * (1 + accelerator.process_index))
        average.update(model)
        average.share_main_process_statistics()
    local = {f"model.{name}": t.clone() for name, t in model.prompt_generator.named_buffers() if t.is_floating_point()}
    averaged = {f"average.{name}": t.clone() for name, t in average.averaged.module.named_buffers()}
    save_file({**local, **averaged}, f"{output_dir}/process{accelerator.process_index}.safetensors")
    # A process that exits with its gloo group alive can abort ("terminate called without an active exception").
    PartialState().destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
