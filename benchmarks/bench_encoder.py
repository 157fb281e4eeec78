"""SAM's image encoder with each attention kernel, with and without `torch.compile`: images/s, the fraction of the
accelerator's dense bf16 peak, the memory one batch's forward allocates beyond the weights (CUDA), and how far each
variant's features are from the dense kernel's. The variants take turns repeat by repeat, so a machine that slows
down meanwhile slows them alike.

    python -m benchmarks.bench_encoder --device cuda            # vit_b, batch 16, bf16, inductor
    python -m benchmarks.bench_encoder --device cpu --released  # vit_b, batch 1, fp32, without torch.compile
    python -m benchmarks.bench_encoder --device cpu             # tiny sizes: the code paths (the smoke test)

Variants (`runtime.speed_up_image_encoder`): `dense` (transformers' relative-position bias mask, the default),
`folded` (the bias folded into query and key, `model/sam_attention.py`), and each under `torch.compile` where a
compiler backend is given (`--compile_backend`; default inductor on CUDA, none with `--released` on a CPU, where
inductor's C++ build takes minutes, and dynamo's "eager" backend in the CPU smoke run, which captures the graph
without compiling it). `python -m benchmarks.run_all --quick-gpu` runs it after `bench_throughput`. FLOPs are the
dense kernel's (FlopCounterMode), the useful work: the folded kernel does more arithmetic for the same output.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import torch
from transformers import SamConfig

from autosam_hf import AutoSamForSegmentation
from autosam_hf.model.sam_attention import RELATIVE_POSITION_KERNELS
from autosam_hf.runtime import DTYPES, describe_machine, speed_up_image_encoder
from benchmarks.bench_throughput import bf16_peak_flops, figures, flops_per_image
from benchmarks.common import machine, sam_checkpoint, synchronizer, time_repeats, timing_summary, write_result


@dataclass(frozen=True)
class Sizes:
    sam: str
    batch_size: int
    repeats: int
    precision: str
    compile_backend: str | None


SIZES = {
    "cuda": Sizes("vit_b", 16, 5, "bfloat16", "inductor"),
    "cpu": Sizes("small", 2, 1, "float32", "eager"),
    "cpu_released": Sizes("vit_b", 1, 3, "float32", None),
}


def result_name(device: str, released: bool = False) -> str:
    """encoder/cuda (the GPU run), encoder/cpu_vit_b (`--released` on a CPU) or encoder/quick (the smoke run)."""
    if device == "cpu":
        return "encoder/cpu_vit_b" if released else "encoder/quick"
    return f"encoder/{device}"


def encoder_model(sizes: Sizes, device: torch.device) -> AutoSamForSegmentation:
    """AutoSAM around a random SAM, every encoder weight perturbed (seeded): random SAM's relative-position tables
    are zero and its features near zero, which would make every kernel agree trivially."""
    torch.manual_seed(0)
    model = AutoSamForSegmentation.from_sam(str(sam_checkpoint(sizes.sam))).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.sam.vision_encoder.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.to(device)


def measure(device_name: str, released: bool = False, compile_backend: str | None = "default") -> dict:
    device = torch.device(device_name)
    sizes = SIZES["cpu_released" if device.type == "cpu" and released else device.type]
    backend = sizes.compile_backend if compile_backend == "default" else compile_backend
    dtype = None if sizes.precision == "float32" else DTYPES[sizes.precision]
    side = SamConfig.from_pretrained(sam_checkpoint(sizes.sam)).vision_config.image_size
    canvas = torch.randn(sizes.batch_size, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    peak = bf16_peak_flops(device)
    variants = [(kernel, False) for kernel in RELATIVE_POSITION_KERNELS]
    if backend is not None:
        variants += [(kernel, True) for kernel in RELATIVE_POSITION_KERNELS]
    torch._dynamo.reset()
    runs = {}
    for kernel, compiled in variants:
        model = speed_up_image_encoder(
            encoder_model(sizes, device), kernel, compiled, **({"backend": backend} if compiled else {})
        )

        def run(model=model):
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
                return model.image_features(canvas)["image_embeddings"]

        runs[f"{kernel}{' compiled' if compiled else ''}"] = run
    flops = flops_per_image(runs["dense"], sizes.batch_size)
    synchronize = synchronizer(device)
    outputs, memory = {}, {}
    for name, run in runs.items():  # warm-up (compilation, kernel choice); the forward's own peak memory
        if device.type == "cuda":
            synchronize()
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        outputs[name] = run().float()
        synchronize()
        memory[name] = (torch.cuda.max_memory_allocated(device) - before) / 2**30 if device.type == "cuda" else None
    # The variants take turns, repeat by repeat: a machine that slows down meanwhile slows all of them alike.
    seconds = {name: [] for name in runs}
    for _ in range(sizes.repeats):
        for name, run in runs.items():
            seconds[name] += time_repeats(run, repeats=1, warmup=0, device=device)
    reference = outputs["dense"]
    results = {}
    for name in runs:
        timing = timing_summary(seconds[name], sizes.batch_size)
        results[name] = {
            **figures(timing["seconds_per_repeat"], sizes.batch_size, flops * sizes.batch_size, peak),
            "seconds_per_batch": seconds[name],
            "forward_peak_memory_gib": memory[name],
            "max_abs_difference_vs_dense": (outputs[name] - reference).abs().max().item(),
            "reference_max_abs": reference.abs().max().item(),
        }
    return {
        "machine": machine(),
        "machine_details": describe_machine(),
        "device": device.type,
        **asdict(sizes),
        "compile_backend": backend,
        "bf16_peak_tflops": None if peak is None else peak / 1e12,
        "variants": results,
    }


def markdown(result: dict) -> str:
    lines = [
        f"**SAM's image encoder by attention kernel** ({result['device']}, {result['precision']}, SAM {result['sam']}, "
        f"batch {result['batch_size']}, torch.compile backend {result['compile_backend'] or 'none'}; "
        f"{result['machine']})",
        "",
        "| variant | images/s | GFLOP/image (dense) | of bf16 peak | forward memory (GiB) | max abs Δ vs dense |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["variants"].items():
        fraction = row["fraction_of_bf16_peak"]
        memory = row["forward_peak_memory_gib"]
        lines.append(
            f"| {name} | {row['images_per_second']:.3g} | {row['gflops_per_image']:.4g} | "
            f"{'–' if fraction is None else f'{100 * fraction:.2g}%'} | {'–' if memory is None else f'{memory:.1f}'} "
            f"| {row['max_abs_difference_vs_dense']:.2e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--released", action="store_true", help="on a CPU: ViT-B at batch 1 instead of tiny sizes")
    parser.add_argument(
        "--compile_backend",
        default="default",
        help="torch.compile backend for the compiled rows; 'none' leaves them out (default: by device, see above)",
    )
    parser.add_argument("--name", help="result EXPERIMENT/RUN (default: `result_name`)")
    args = parser.parse_args(argv)
    backend = None if args.compile_backend == "none" else args.compile_backend
    result = measure(args.device, args.released, backend)
    path = write_result(args.name or result_name(torch.device(args.device).type, args.released), result)
    print(markdown(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
