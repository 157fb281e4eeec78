"""Where AutoSAM runs: the device, the precision that is fast on it, and a description of the machine.

bfloat16 is only fast where the hardware computes it natively: NVIDIA GPUs from Ampere on, and CPUs with AMX or
AVX-512-BF16 (recent Intel Xeons, AMD Zen 4 and later). On other CPUs (AVX2-only machines, most laptops) PyTorch
emulates it, and autocast runs several times *slower* than float32 (about 10x for SAM's ViT on a 2-core AMD EPYC
with AVX2 only). So `"auto"` picks bfloat16 only where it is native, and an explicit bfloat16 request on a CPU
without it still runs but logs one warning.

The memory layout g and h convolve in is chosen here too (`use_fast_memory_format`): the model itself is
layout-neutral, and the commands and the trainer lay it out after loading and at each train/eval switch.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import platform
from collections.abc import Iterator, Mapping, Sequence

import torch
from transformers import BatchFeature

from .model.modeling_autosam import AutoSamForSegmentation, AutoSamPromptGenerator
from .model.sam_attention import RELATIVE_POSITION_KERNELS, set_relative_position_kernel

logger = logging.getLogger(__name__)

# Names the commands accept for a compute dtype, and for accelerate's mixed-precision setting.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MIXED_PRECISION_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SLOW_PRECISION_WARNING = (
    "{dtype} autocast was requested on {device}, which has no native {dtype} ({detail}); PyTorch emulates it there, "
    "typically 4-10x slower than float32. Use float32 (`--dtype float32` / `--mixed_precision no`, or `auto`)."
)

# oneDNN's ISA cap (`onednn_isa_cap`) and ATen's (ATEN_CPU_CAPABILITY) can withhold native bf16 kernels from a
# CPU that has them; oneDNN caps that still allow bf16 dot products name BF16, AMX or AVX10 (AVX2_VNNI_2 only
# converts).
_ONEDNN_BF16_ISAS = ("BF16", "AMX", "AVX10")
# oneDNN ISA caps that leave out AVX-512.
_ONEDNN_CAPS_WITHOUT_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")
_X86_MACHINES = ("x86_64", "amd64", "i686", "i386")


def onednn_isa_cap() -> str:
    """The oneDNN ISA cap set in the environment (ONEDNN_MAX_CPU_ISA, or its former name DNNL_MAX_CPU_ISA),
    upper-case; "" when none is set."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()


def cpu_model_name() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), e.g. 'AMD EPYC' or 'Intel(R) Xeon(R) Processor'."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether PyTorch computes bfloat16 natively on this CPU (AMX or AVX-512-BF16, not capped by environment)."""
    onednn_cap = onednn_isa_cap()
    if onednn_cap not in ("", "ALL", "DEFAULT") and not any(isa in onednn_cap for isa in _ONEDNN_BF16_ISAS):
        return False
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if all(probe is None for probe in probes):  # older torch: read the CPU flags
        try:
            with open("/proc/cpuinfo") as cpuinfo:
                flags = next((line.split() for line in cpuinfo if line.startswith("flags")), [])
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return any(probe() for probe in probes if probe is not None)


def dtype_is_native(dtype: torch.dtype | None, device: torch.device) -> bool:
    """Whether autocast in `dtype` (None = float32) runs at native speed on `device`."""
    if dtype is None or dtype == torch.float32:
        return True
    if device.type == "cuda":
        return dtype != torch.bfloat16 or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return dtype == torch.bfloat16 and cpu_has_native_bfloat16()
    return dtype == torch.float16  # MPS


def resolve_device(device: str = "auto") -> torch.device:
    """`"auto"` → CUDA if available, else Apple MPS, else CPU; anything else is checked to be usable."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a device name (auto, cpu, cuda, cuda:1, mps)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return resolved


def fastest_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision that is native on `device`, or None (float32) where none is."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bfloat16() else None


@functools.cache
def _warn_slow_once(dtype: torch.dtype, device_type: str) -> None:
    if device_type == "cpu":
        detail = f"no AMX or AVX-512-BF16: {cpu_model_name()}, {torch.backends.cpu.get_cpu_capability()}"
    else:
        detail = torch.cuda.get_device_name() if device_type == "cuda" else device_type
    name = str(dtype).removeprefix("torch.")
    logger.warning(SLOW_PRECISION_WARNING.format(dtype=name, device=f"this {device_type.upper()}", detail=detail))


def warn_if_slow(dtype: torch.dtype | None, device: torch.device) -> None:
    """Log, once per process, that `dtype` is emulated (slow) on `device`."""
    if not dtype_is_native(dtype, device):
        _warn_slow_once(dtype, device.type)


def resolve_autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--dtype` (`auto`, `float32`, `bfloat16`, `float16`), or None for plain float32.

    `"auto"` is the fastest native precision (`fastest_autocast_dtype`). An explicit request is honoured, with a
    warning where it is emulated. Weights stay float32: autocast runs matmuls and convolutions in the reduced dtype.
    """
    if dtype == "auto":
        return fastest_autocast_dtype(device)
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    resolved = None if DTYPES[dtype] == torch.float32 else DTYPES[dtype]
    warn_if_slow(resolved, device)
    return resolved


def preferred_memory_format(device: torch.device | str = "cpu", training: bool = False) -> torch.memory_format:
    """The layout g's convolutions run fastest in on `device`, training (forward + backward) or not.

    Channels-last (NHWC), except for training on x86 CPUs without AVX-512 (AVX2-only, or capped below it), where
    oneDNN's NHWC weight-gradient kernel is slow. Measured for g (HarDNet-85 at 352, float32, 1 thread, AMD EPYC):
    forward + backward at batch 3 with AVX2 kernels 7.9 s channels-last vs 7.1 s NCHW, with AVX-512 3.75 vs 4.07 s;
    inference at batch 1 with AVX2 kernels 0.66 s channels-last vs 0.77 s NCHW. Other CPUs (ARM): not measured,
    channels-last.
    """
    if torch.device(device).type != "cpu" or not training:
        return torch.channels_last
    x86 = platform.machine().lower() in _X86_MACHINES
    without_avx512 = torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2")
    if x86 and (without_avx512 or onednn_isa_cap() in _ONEDNN_CAPS_WITHOUT_AVX512):
        return torch.contiguous_format
    return torch.channels_last


def _lay_out(module: torch.nn.Module, memory_format: torch.memory_format) -> None:
    # `Module.to` swaps each tensor's data, keeping the parameter objects (an optimizer holding them is unaffected);
    # skipped when already laid out, as it is at most train/eval switches.
    if any(not p.is_contiguous(memory_format=memory_format) for p in module.parameters() if p.ndim == 4):
        module.to(memory_format=memory_format)


def use_fast_memory_format(model: torch.nn.Module) -> torch.nn.Module:
    """Lay AutoSAM's conv nets out in the layout they run fastest in, and return `model`.

    `model`: an `AutoSamForSegmentation` or a bare `AutoSamPromptGenerator`, not a wrapper of one (pass DDP's or
    torch.compile's inner module); any other network (a baseline's) is returned as it is. g gets
    `preferred_memory_format` for its parameters' device and its own mode (a frozen g stays in eval mode while h
    trains), h channels-last; g lays its input out like its weights. Layouts are not saved and train()/eval() leave
    them, so the commands and the trainer call this after building or loading a model and after each switch of g's
    mode. Until then the weights keep PyTorch's layout, the one random initialisation fills (laying out before
    would change a seed's weights).
    """
    if isinstance(model, AutoSamForSegmentation):
        prompt_generator, surrogate_decoder = model.prompt_generator, model.surrogate_decoder
    elif isinstance(model, AutoSamPromptGenerator):
        prompt_generator, surrogate_decoder = model, None
    else:
        return model
    device = next(prompt_generator.parameters()).device
    _lay_out(prompt_generator, preferred_memory_format(device, training=prompt_generator.training))
    if surrogate_decoder is not None:
        _lay_out(surrogate_decoder, torch.channels_last)
    return model


def speed_up_image_encoder(
    model: torch.nn.Module, attention_kernel: str = "dense", compile_encoder: bool = False, **compile_options
) -> torch.nn.Module:
    """Run the frozen image encoder of an `AutoSamForSegmentation` (`model.sam.vision_encoder`, every family) with
    `attention_kernel` (`sam_attention.RELATIVE_POSITION_KERNELS`: "dense", transformers' bias mask, or "folded",
    no mask; SAM and SAM-HQ, SAM 2's Hiera has no such bias) and, with `compile_encoder`, under `torch.compile` (in
    place: `Module.compile`, so the state dict keeps its keys; `compile_options` go to it). Returns `model`.

    Raises:
        ValueError: an unknown `attention_kernel`.
    """
    if attention_kernel not in RELATIVE_POSITION_KERNELS:
        raise ValueError(
            f"--attention_kernel must be one of {', '.join(RELATIVE_POSITION_KERNELS)}; got {attention_kernel!r}"
        )
    if attention_kernel == "dense" and not compile_encoder:  # as built: nothing to change
        return model
    encoder = model.sam.vision_encoder
    set_relative_position_kernel(encoder, attention_kernel)
    if compile_encoder:
        # Image batches vary in size only at a folder's last batch: one recompilation, not a dynamic-shape graph.
        encoder.compile(**{"dynamic": False, **compile_options})
    return model


# Threads preparing inference batches beside an accelerator: enough to resize and normalise ahead of a GPU at batch
# 8 or more; on a CPU every thread is the model's, so none.
ACCELERATOR_PREPARATION_WORKERS = 4


def preparation_workers(device: torch.device) -> int:
    """The default number of threads preparing the next batches while the model runs on `device`
    (`iter_predictions`' `num_workers`): 0 on a CPU, where they would take the model's cores, else
    `ACCELERATOR_PREPARATION_WORKERS` (at most the CPU count)."""
    if torch.device(device).type == "cpu":
        return 0
    return min(ACCELERATOR_PREPARATION_WORKERS, os.cpu_count() or 1)


@contextlib.contextmanager
def inference_autocast(device: torch.device, autocast_dtype: torch.dtype | None) -> Iterator[None]:
    """`torch.inference_mode()` with autocast in `autocast_dtype` on `device`; None runs plain float32."""
    enabled = autocast_dtype is not None
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=enabled):
        yield


def model_inputs_for(model: torch.nn.Module, batch: Mapping, names: Sequence[str]) -> BatchFeature:
    """The entries of `batch` that `names` lists, on the model's device, floating-point ones in the model's dtype:
    the processor gives float32 pixels, and a model loaded in bf16 or fp16 (`dtype=`) needs its own."""
    inputs = BatchFeature({name: batch[name] for name in names if name in batch})
    return inputs.to(device=model.device, dtype=model.dtype)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, then restore the thread count.

    Per-sample data work (augmenting one image) is too small to split across threads: with two threads it ran 7×
    slower than with one on a busy 2-core CPU, and it took those threads from the model's own arithmetic. Data-loader
    workers already run on one thread, so this changes nothing there.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
KEEP_FREED_MEMORY_VARIABLE = "AUTOSAM_KEEP_FREED_CPU_MEMORY"


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Let this process reuse the large CPU blocks PyTorch frees, instead of returning them to the OS each time.

    glibc serves every allocation above 32 MiB with a fresh `mmap` and unmaps it on free, so each such tensor is
    page-faulted in again, 4 KiB at a time. SAM's ViT-B allocates an 805 MB attention mask in each of its 4
    global-attention blocks and 48 MiB MLP activations in all 12, per image: in float32 on one core of an AMD EPYC
    (AVX2 kernels) the encoder took 13.9 s per image with glibc's defaults and 10.6 s with this (same output,
    bit for bit). It raises glibc's mmap threshold to 1 GiB (glibc versions that refuse a threshold above 32 MiB:
    no mmap at all) and trims the heap only above 2 GiB free; the cost is that the process keeps its peak memory
    until it exits. The `autosam-*` commands call it; set AUTOSAM_KEEP_FREED_CPU_MEMORY=0 to opt out. Linux with
    glibc only (elsewhere nothing changes; with jemalloc or tcmalloc preloaded it changes nothing either). Returns
    whether glibc accepted the settings.
    """
    if os.environ.get(KEEP_FREED_MEMORY_VARIABLE, "1") == "0":
        return False
    try:
        if platform.system() != "Linux" or not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        libc = ctypes.CDLL("libc.so.6")
    except (OSError, ValueError):  # no such confstr name, or no glibc to load
        return False
    mmap_setting = libc.mallopt(_M_MMAP_THRESHOLD, 2**30) == 1 or libc.mallopt(_M_MMAP_MAX, 0) == 1
    applied = mmap_setting and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if not applied:
        logger.info("glibc refused the mallopt settings; large CPU tensors stay mmap-backed")
    return applied


def resolve_mixed_precision(mixed_precision: str | None, device: torch.device) -> str:
    """accelerate's `mixed_precision` for `--mixed_precision` (`auto` or None, `no`, `bf16`, `fp16`).

    `auto`/None is the fastest native precision on `device`; an explicit emulated choice is kept, with a warning.
    """
    if mixed_precision in (None, "auto"):
        fastest = fastest_autocast_dtype(device)
        return {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[fastest]
    if mixed_precision not in MIXED_PRECISION_DTYPES:
        raise ValueError(f"--mixed_precision must be auto, no, bf16 or fp16; got {mixed_precision!r}")
    warn_if_slow(MIXED_PRECISION_DTYPES[mixed_precision], device)
    return mixed_precision


def describe_machine() -> dict[str, object]:
    """What a benchmark figure must name: CPU model and vector ISA, native bf16, threads, torch, GPU if any."""
    description = {
        "cpu": cpu_model_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bfloat16": cpu_has_native_bfloat16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        description["gpu"] = torch.cuda.get_device_name()
    return description


def machine_summary(description: dict[str, object] | None = None) -> str:
    """One line for a table caption, e.g. 'AMD EPYC (AVX512, native bf16), 2 threads, torch 2.13.0+cpu'."""
    description = description or describe_machine()
    bf16 = "native bf16" if description["cpu_native_bfloat16"] else "no native bf16"
    summary = f"{description['cpu']} ({description['cpu_capability']}, {bf16}), {description['threads']} threads"
    if description.get("gpu"):
        summary = f"{description['gpu']}; CPU {summary}"
    return f"{summary}, torch {description['torch']}"


__all__ = [
    "DTYPES",
    "cpu_has_native_bfloat16",
    "cpu_model_name",
    "describe_machine",
    "dtype_is_native",
    "fastest_autocast_dtype",
    "inference_autocast",
    "machine_summary",
    "onednn_isa_cap",
    "preparation_workers",
    "preferred_memory_format",
    "resolve_autocast_dtype",
    "resolve_device",
    "resolve_mixed_precision",
    "speed_up_image_encoder",
    "use_fast_memory_format",
    "warn_if_slow",
]
