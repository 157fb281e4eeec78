"""Device and precision choice: `auto` never picks an emulated precision, an explicit emulated one warns once; g's
and h's memory layout follows the CPU and g's mode."""

import logging
import os
import subprocess
import sys

import pytest
import torch
from conftest import make_tiny_model

from autosam_hf import runtime
from autosam_hf.hub.loading import load_model_and_processor
from autosam_hf.model.modeling_autosam import AutoSamPromptGenerator
from autosam_hf.runtime import (
    cpu_has_native_bfloat16,
    describe_machine,
    machine_summary,
    preferred_memory_format,
    resolve_autocast_dtype,
    resolve_device,
    resolve_mixed_precision,
    speed_up_image_encoder,
    use_fast_memory_format,
)

CPU = torch.device("cpu")


@pytest.fixture
def cpu_bfloat16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bfloat16; resets the once-only warning."""

    def pretend(native: bool) -> None:
        monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: native)
        runtime._warn_slow_once.cache_clear()

    yield pretend
    runtime._warn_slow_once.cache_clear()


def slow_warnings(caplog) -> list[str]:
    return [record.message for record in caplog.records if "emulates it" in record.message]


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, None)])
def test_auto_picks_bfloat16_only_where_native(cpu_bfloat16, native, expected):
    cpu_bfloat16(native)
    assert resolve_autocast_dtype("auto", CPU) is expected
    assert resolve_mixed_precision("auto", CPU) == ("bf16" if native else "no")
    assert resolve_mixed_precision(None, CPU) == ("bf16" if native else "no")


def test_explicit_emulated_bfloat16_runs_but_warns_once(cpu_bfloat16, caplog):
    cpu_bfloat16(False)
    with caplog.at_level(logging.WARNING, logger="autosam_hf.runtime"):
        assert resolve_autocast_dtype("bfloat16", CPU) == torch.bfloat16
        assert resolve_mixed_precision("bf16", CPU) == "bf16"
        assert resolve_autocast_dtype("bfloat16", CPU) == torch.bfloat16
    (warning,) = slow_warnings(caplog)
    assert "bfloat16" in warning and "float32" in warning and runtime.cpu_model_name() in warning


def test_native_or_float32_choices_do_not_warn(cpu_bfloat16, caplog):
    cpu_bfloat16(True)
    with caplog.at_level(logging.WARNING, logger="autosam_hf.runtime"):
        assert resolve_autocast_dtype("bfloat16", CPU) == torch.bfloat16
        assert resolve_autocast_dtype("float32", CPU) is None
        assert resolve_mixed_precision("no", CPU) == "no"
    assert slow_warnings(caplog) == []


def test_float16_is_emulated_on_cpus(cpu_bfloat16, caplog):
    cpu_bfloat16(True)
    with caplog.at_level(logging.WARNING, logger="autosam_hf.runtime"):
        assert resolve_autocast_dtype("float16", CPU) == torch.float16
    assert len(slow_warnings(caplog)) == 1


@pytest.mark.parametrize(
    "variable, value",
    [
        ("ONEDNN_MAX_CPU_ISA", "AVX2"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"),
        ("DNNL_MAX_CPU_ISA", "AVX2"),  # oneDNN's former name, read by the same `onednn_isa_cap`
        ("ATEN_CPU_CAPABILITY", "avx2"),
    ],
)
def test_isa_caps_withhold_native_bfloat16(monkeypatch, variable, value):
    """How the test suite simulates an AVX2-only machine on a newer one."""
    monkeypatch.setenv(variable, value)
    cpu_has_native_bfloat16.cache_clear()
    try:
        assert cpu_has_native_bfloat16() is False
    finally:
        cpu_has_native_bfloat16.cache_clear()


def test_detection_follows_the_cpu_flags(monkeypatch):
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(variable, raising=False)
    cpu_has_native_bfloat16.cache_clear()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next(line.split() for line in cpuinfo if line.startswith("flags"))
        assert cpu_has_native_bfloat16() == ("amx_bf16" in flags or "avx512_bf16" in flags)
    finally:
        cpu_has_native_bfloat16.cache_clear()


# ----------------------------------------------------------------------------------------------- memory layout
@pytest.fixture
def x86_cpu(monkeypatch):
    """Pretend to be an x86 CPU with ATen `capability` kernels and oneDNN capped at `onednn_cap` ("" for none)."""

    def pretend(capability: str, onednn_cap: str = "") -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        # Not the variable itself: oneDNN reads it once per process, and this test must not cap the suite's kernels.
        monkeypatch.setattr(runtime, "onednn_isa_cap", lambda: onednn_cap)
        monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")

    return pretend


def is_laid_out(module: torch.nn.Module, memory_format: torch.memory_format) -> bool:
    return all(p.is_contiguous(memory_format=memory_format) for p in module.parameters() if p.ndim == 4)


@pytest.mark.parametrize(
    ("capability", "onednn_cap", "training_layout"),
    [
        ("AVX512", "", torch.channels_last),
        ("AVX2", "", torch.contiguous_format),
        ("DEFAULT", "", torch.contiguous_format),
        ("AVX512", "AVX2", torch.contiguous_format),
    ],
)
def test_conv_layout_follows_the_cpu_and_the_mode(x86_cpu, capability, onednn_cap, training_layout):
    """g trains in NCHW where oneDNN's NHWC weight gradient is slow (x86 without AVX-512) and channels-last
    elsewhere; it infers channels-last everywhere, h is channels-last. The model is laid out only when asked, each
    time on the same parameters (an optimizer keeps them), and g's input follows its weights."""
    x86_cpu(capability, onednn_cap)
    assert preferred_memory_format("cpu", training=True) == training_layout
    assert preferred_memory_format("cpu", training=False) == torch.channels_last
    assert preferred_memory_format("cuda", training=True) == torch.channels_last
    model = make_tiny_model()
    prompt_generator, surrogate_decoder = model.prompt_generator, model.surrogate_decoder
    # Built in PyTorch's layout (the one random init fills), and train()/eval() alone change nothing.
    assert is_laid_out(model.eval().train(), torch.contiguous_format)
    assert prompt_generator.input_memory_format() == torch.contiguous_format
    parameters = list(model.parameters())
    for mode, layout in ((False, torch.channels_last), (True, training_layout), (False, torch.channels_last)):
        assert use_fast_memory_format(model.train(mode)) is model
        assert prompt_generator.training == mode and is_laid_out(prompt_generator, layout)
        assert prompt_generator.input_memory_format() == layout
        assert is_laid_out(surrogate_decoder, torch.channels_last)
        assert all(a is b for a, b in zip(parameters, model.parameters(), strict=True))
    # The surrogate stage: g is frozen, so in eval mode while the model trains, and infers channels-last.
    model.set_trainable(prompt_generator=False, surrogate_decoder=True)
    use_fast_memory_format(model.train())
    assert not prompt_generator.training and is_laid_out(prompt_generator, torch.channels_last)
    # A bare g (the training benchmark's) is laid out as the model's.
    bare = use_fast_memory_format(AutoSamPromptGenerator(model.config).train())
    assert is_laid_out(bare, training_layout)


def test_g_gives_the_same_prompts_in_either_layout():
    prompt_generator = make_tiny_model().prompt_generator.eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        prompts = []
        for layout in (torch.channels_last, torch.contiguous_format):
            prompts.append(prompt_generator.to(memory_format=layout)(pixels))
            assert prompt_generator.input_memory_format() == layout
    torch.testing.assert_close(prompts[1], prompts[0], rtol=0, atol=1e-3)


def test_arm_cpus_keep_channels_last(monkeypatch):
    """ATen reports DEFAULT on ARM CPUs without SVE: NCHW was only measured faster on x86 without AVX-512."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    monkeypatch.setattr(runtime.platform, "machine", lambda: "aarch64")
    assert preferred_memory_format("cpu", training=True) == torch.channels_last


def test_other_networks_keep_their_layout():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3)).eval()
    assert use_fast_memory_format(network) is network and is_laid_out(network, torch.contiguous_format)


def test_the_commands_loading_lays_the_model_out(x86_cpu, tmp_path):
    """Loading resets layouts: `load_model_and_processor` (autosam-predict, -evaluate, -export) lays out again."""
    x86_cpu("AVX2")
    use_fast_memory_format(make_tiny_model().eval()).save_pretrained(tmp_path)
    model, _ = load_model_and_processor(tmp_path)
    assert not model.training
    assert is_laid_out(model.prompt_generator, torch.channels_last)
    assert is_laid_out(model.surrogate_decoder, torch.channels_last)


def test_bad_names_are_rejected_naming_the_argument():
    with pytest.raises(ValueError, match="--dtype must be one of auto, float32"):
        resolve_autocast_dtype("fp8", CPU)
    with pytest.raises(ValueError, match="--mixed_precision must be auto, no, bf16 or fp16"):
        resolve_mixed_precision("half", CPU)
    with pytest.raises(ValueError, match="--device 'gpu0' is not a device name"):
        resolve_device("gpu0")


def test_devices():
    assert resolve_device("cpu") == CPU
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
        assert resolve_autocast_dtype("auto", torch.device("cuda")) in (torch.bfloat16, torch.float16)
    else:
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_machine_description_names_the_cpu_and_its_bfloat16():
    description = describe_machine()
    assert description["cpu"] == runtime.cpu_model_name() and description["cpu"]
    assert description["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert description["cpu_native_bfloat16"] == cpu_has_native_bfloat16()
    summary = machine_summary(description)
    assert description["cpu"] in summary and "bf16" in summary and torch.__version__ in summary


def test_single_thread_restores_the_thread_count():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with runtime.single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), runtime.single_thread():
            raise RuntimeError("the block failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# Allocates and frees a 64 MiB tensor eight times and prints the fewest page faults any of the last six took: with
# glibc's defaults each is a fresh mmap (above glibc's largest dynamic mmap threshold, 32 MiB: 16,384 pages of 4 KiB
# every time); with keep_freed_cpu_memory the heap keeps freed blocks, and once it holds enough of them (glibc's
# alignment slack may need a second block first) an allocation reuses one without faulting.
# Page faults of a 64 MiB tensor allocated again and again, with glibc's defaults (above its 32 MiB mmap ceiling, so
# each one is a fresh mmap), then after keep_freed_cpu_memory in the same process.
PAGE_FAULT_PROBE = """
import resource, torch
from autosam_hf.runtime import keep_freed_cpu_memory

def faults():
    counts = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 2**20)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(counts[2:])

default = faults()
applied = keep_freed_cpu_memory()
print(applied, default, faults())
"""


def test_keep_freed_cpu_memory_reuses_large_blocks_and_can_be_turned_off(monkeypatch):
    env = {**os.environ, runtime.KEEP_FREED_MEMORY_VARIABLE: "1"}
    output = subprocess.run(
        [sys.executable, "-c", PAGE_FAULT_PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    applied, faults_default, faults_kept = output[0], int(output[1]), int(output[2])
    monkeypatch.setenv(runtime.KEEP_FREED_MEMORY_VARIABLE, "0")
    assert runtime.keep_freed_cpu_memory.__wrapped__() is False  # turned off: glibc is not even asked
    if applied == "False":
        pytest.skip("not glibc, or a glibc that refuses the settings: nothing changes here")
    # Page faults count 4 KiB pages, or 2 MiB ones where transparent huge pages are always on: compare, not count.
    assert faults_default > 0 and faults_kept < faults_default / 10


def test_commands_keep_freed_memory_before_they_run(monkeypatch):
    from autosam_hf import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_cpu_memory", lambda: calls.append("kept"))
    parser = cli.ArgumentParser(prog="autosam-x")
    assert parser.run(lambda args: calls.append("ran") or 0, []) == 0
    assert calls == ["kept", "ran"]


def test_encoder_speed_ups_keep_the_embeddings_and_the_weights():
    """The folded attention kernel and torch.compile (its "eager" backend here: the graph capture without inductor's
    C++ build) change neither the image features nor the state dict's keys; by default nothing is touched."""
    from torch._dynamo.utils import counters

    model = make_tiny_model().eval()
    pixels = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        expected = model.image_features(pixels)
    keys = list(model.state_dict())
    assert speed_up_image_encoder(model) is model
    assert not any(hasattr(module, "relative_position_kernel") for module in model.modules())
    torch._dynamo.reset()
    counters.clear()
    speed_up_image_encoder(model, "folded", compile_encoder=True, backend="eager")
    with torch.no_grad():
        actual = model.image_features(pixels)
    assert counters["stats"]["unique_graphs"] >= 1  # the encoder ran as a captured graph
    assert list(model.state_dict()) == keys
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-4)
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="--attention_kernel must be one of dense, folded"):
        speed_up_image_encoder(model, "flash")
