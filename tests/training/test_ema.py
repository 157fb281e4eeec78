"""autosam_hf.training.ema: the warmed-up exponential moving average of the trained parts (`--ema_decay`)."""

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, make_tiny_model, run_command
from safetensors.torch import load_file

from autosam_hf.training.ema import WeightAverage, warmed_up_decay


def test_the_decay_warms_up_then_holds():
    assert warmed_up_decay(0.999, 1) == pytest.approx(2 / 11)  # the second update keeps 2/11 of the first's copy
    assert warmed_up_decay(0.999, 90) == pytest.approx(91 / 100)
    assert warmed_up_decay(0.999, 10**6) == 0.999
    assert warmed_up_decay(0.5, 20) == 0.5 and warmed_up_decay(0.5, 3) == pytest.approx(4 / 13)


def perturb(model, generator: torch.Generator) -> None:
    """One 'optimizer step': every tensor of g and h (BatchNorm statistics included) moves."""
    with torch.no_grad():
        for tensor in [*model.prompt_generator.state_dict().values(), *model.surrogate_decoder.state_dict().values()]:
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator))
            else:
                tensor.add_(1)


def test_the_average_follows_the_warmed_up_recursion_over_g_only():
    """Three updates against the recursion written out: the first copies the weights, each later one after n
    earlier ones is a = d a + (1 - d) w with d = min(decay, (1 + n) / (10 + n)); BatchNorm statistics averaged as
    weights, its batch counter copied; SAM and h (not trained here) are not copied."""
    model, generator = make_tiny_model(), torch.Generator().manual_seed(0)
    average = WeightAverage(model, ["prompt_generator"], decay=0.2)  # warmed-up decays 2/11, then 0.2 (not 3/12)
    expected = None
    for n in range(3):
        perturb(model, generator)
        average.update(model)
        current = {k: v.clone() for k, v in model.prompt_generator.state_dict().items()}
        if expected is None:
            expected = current
        else:
            decay = min(0.2, (1 + n) / (10 + n))
            expected = {
                k: decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v for k, v in current.items()
            }
    assert average.num_updates == 3
    state = average.state_dict()
    assert {key for key in state if key != "n_averaged"} == {f"module.prompt_generator.{k}" for k in expected}
    for key, value in expected.items():
        torch.testing.assert_close(state[f"module.prompt_generator.{key}"], value, rtol=1e-5, atol=1e-5)
    assert any("running_mean" in key for key in expected) and any("num_batches_tracked" in key for key in expected)


def test_applied_to_swaps_the_average_in_and_the_trained_weights_back():
    model, generator = make_tiny_model(), torch.Generator().manual_seed(1)
    average = WeightAverage(model, ["prompt_generator", "surrogate_decoder"], decay=0.9)
    average.update(model)
    perturb(model, generator)
    average.update(model)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with average.applied_to(model):
        inside = model.state_dict()
        for key, value in average.state_dict().items():
            if key != "n_averaged":
                assert torch.equal(inside[key.removeprefix("module.")], value), key
        key = "surrogate_decoder.layers.6.weight"
        assert not torch.equal(inside[key], trained[key])
    with pytest.raises(RuntimeError), average.applied_to(model):
        raise RuntimeError("validation failed")  # the trained weights come back however the block ends
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_the_state_round_trips_into_a_fresh_average():
    model, generator = make_tiny_model(), torch.Generator().manual_seed(2)
    average = WeightAverage(model, ["surrogate_decoder"], decay=0.99)
    for _ in range(2):
        average.update(model)
        perturb(model, generator)
    restored = WeightAverage(make_tiny_model(seed=5), ["surrogate_decoder"], decay=0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.num_updates == 2
    for key, value in average.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="--ema_decay"):
        WeightAverage(make_tiny_model(), ["prompt_generator"], decay=decay)


@pytest.mark.slow
def test_with_two_processes_the_average_holds_process_0s_batchnorm_statistics(tmp_path):
    """Each process's BatchNorm sees its own batches; after each update every process holds process 0's average of
    the statistics (what the checkpoint saves), not its own."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(Path(__file__).with_name("average_in_two_processes.py")), str(tmp_path),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    result = run_command(command, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]
    first, second = (load_file(tmp_path / f"process{i}.safetensors") for i in range(2))
    assert not torch.equal(first["model.1.running_mean"], second["model.1.running_mean"])  # own batches
    for name in ("average.prompt_generator.1.running_mean", "average.prompt_generator.1.running_var"):
        assert torch.equal(first[name], second[name])
    # Process 0's own three updates, replayed: the average of its statistics (decays copy, 2/11, 3/12).
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    batchnorm = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    expected = None
    for n in range(3):
        batchnorm(torch.randn(2, 3, 5, 5, generator=generator))
        mean = batchnorm[1].running_mean.detach().clone()
        expected = mean if expected is None else expected.lerp(mean, 1 - warmed_up_decay(0.5, n))
    torch.testing.assert_close(first["average.prompt_generator.1.running_mean"], expected)
