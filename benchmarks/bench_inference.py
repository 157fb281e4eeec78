"""Benchmarks 2 and 3: inference cost per image for each mode, and where the time of one AutoSAM forward goes.

Modes, on the same Kvasir test images at the SAM ViT-B configuration (random weights), batch 1:
  - `autosam`: full AutoSAM (SAM encoder + g + SAM mask decoder), through `autosam_hf.inference.predict_images`;
  - `surrogate`: h(g(I)), SAM not run (the `--fast` path of autosam-predict);
  - `sam_point`: plain SAM given one point prompt (the image centre), as SAM is used without AutoSAM.
Each figure: one warm-up image, then the median over `--images` (3) timed images; every call includes the
processor and the post-processing to the image's original size. On CPUs each (mode, precision) runs in a fresh
process, so its peak resident memory is its own (with --quick every part runs in the benchmark's own process, and
the peaks are that process's); on GPUs the modes share a process and the peak is the GPU memory allocated by that mode.

With `--reference_dir`, the official AutoSAM inference (`reference.py`) is timed in the same run on the same
machine, and `speedup_vs_reference` is ours / theirs at the same sizes (fp32 only; never across machines).

    python -m benchmarks.bench_inference                                  # ViT-B, fp32 (+ bf16 where native)
    python -m benchmarks.bench_inference --reference_dir /tmp/autosam_reference --reference_pythonpath /tmp/refdeps
    python -m benchmarks.bench_inference --quick                          # small SAM, g at 64 (< 1 minute)
    python -m benchmarks.bench_inference --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource

import torch

from autosam_hf.runtime import (
    cpu_has_native_bfloat16,
    dtype_is_native,
    keep_freed_cpu_memory,
    resolve_device,
    use_fast_memory_format,
)
from benchmarks.common import (
    default_result_name,
    kvasir_test_images,
    machine,
    run_python_json,
    sam_checkpoint,
    time_repeats,
    timing_summary,
    write_result,
)
from benchmarks.reference import add_reference_arguments, measure_reference_runs

MODES = ("autosam", "surrogate", "sam_point")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
PROMPT_SIZE = 352  # g's input size for polyps; --quick uses 64 (it only checks that the benchmark runs)
QUICK_PROMPT_SIZE = 64


def precisions_to_run(include_emulated: bool, device: torch.device) -> list[str]:
    """fp32, and bf16 where the device computes it natively (emulated bf16 costs minutes and says nothing)."""
    return [name for name, dtype in PRECISIONS.items() if include_emulated or dtype_is_native(dtype, device)]


def load_model(sam_dir: str, device: torch.device, prompt_size: int):
    from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor

    torch.manual_seed(0)
    model = AutoSamForSegmentation.from_sam(sam_dir, prompt_input_size=prompt_size).eval().to(device)
    use_fast_memory_format(model)
    return model, AutoSamImageProcessor.from_model_config(model.config)


def mode_runner(model, processor, mode: str, dtype: torch.dtype | None):
    """One image → its prediction at the original size, in `mode` (batch 1)."""
    from autosam_hf.inference import predict_images
    from autosam_hf.runtime import inference_autocast

    device = model.device
    if mode != "sam_point":
        return lambda image: predict_images(model, processor, [image], mode=mode, batch_size=1, autocast_dtype=dtype)

    def sam_point(image):
        inputs = processor(images=image, return_tensors="pt", canvases=["sam"])
        height, width = inputs["reshaped_input_sizes"][0].tolist()
        with inference_autocast(device, dtype):
            outputs = model.sam(
                pixel_values=inputs["pixel_values"].to(device),
                input_points=torch.tensor([[[[width / 2, height / 2]]]], device=device),
                input_labels=torch.ones(1, 1, 1, dtype=torch.long, device=device),
                multimask_output=False,
            )
        return processor.post_process_logits(outputs.pred_masks[:, 0].float().cpu(), inputs["original_sizes"])

    return sam_point


def measure_modes(
    sam_dir: str, precision: str, modes: list[str], count: int, device: torch.device, prompt_size: int = PROMPT_SIZE
) -> dict:
    """In this process: per mode, seconds per image (batch 1, median of `count` images after a warm-up one) and
    peak memory (CPU: this process's peak resident set; CUDA: the mode's peak allocated GPU memory)."""
    model, processor = load_model(sam_dir, device, prompt_size)
    images = kvasir_test_images(count + 1)
    results = {}
    for mode in modes:
        run = mode_runner(model, processor, mode, PRECISIONS[precision])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        queue = iter(images)
        seconds = time_repeats(lambda run=run, queue=queue: run(next(queue)), repeats=count, device=device)
        peak = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        results[mode] = {**timing_summary(seconds, 1), "peak_memory_mib": peak}
    return results


def breakdown(sam_dir: str, precision: str, device: torch.device, prompt_size: int, repeats: int = 2) -> dict:
    """Seconds spent in SAM's encoder, g, SAM's mask decoder and h for one image (batch 1; best of `repeats`)."""
    from autosam_hf.runtime import inference_autocast

    model, processor = load_model(sam_dir, device, prompt_size)
    inputs = processor(images=kvasir_test_images(1), return_tensors="pt")
    pixel_values, prompt_pixel_values = (inputs[name].to(device) for name in ("pixel_values", "prompt_pixel_values"))
    parts = {
        "sam_image_encoder": lambda state: state.update(image=model.get_image_embeddings(pixel_values)),
        "prompt_generator_g": lambda state: state.update(prompt=model.prompt_generator(prompt_pixel_values)),
        "sam_mask_decoder": lambda state: model.decode_masks(state["image"], state["prompt"]),
        "surrogate_decoder_h": lambda state: model.surrogate_decoder(state["prompt"]),
    }
    state: dict = {}
    with inference_autocast(device, PRECISIONS[precision]):
        best = {
            name: min(time_repeats(lambda part=part: part(state), repeats=repeats, device=device))
            for name, part in parts.items()
        }
    autosam = best["sam_image_encoder"] + best["prompt_generator_g"] + best["sam_mask_decoder"]
    return {name: {"seconds": value, "share_of_autosam_forward": value / autosam} for name, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--name",
        help="Result EXPERIMENT/RUN (default inference/latest, or quick).",
    )
    parser.add_argument("--images", type=int, default=3, help="Timed images per mode (after one warm-up image).")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    parser.add_argument("--prompt_size", type=int, help=f"g's input size: {PROMPT_SIZE} ({QUICK_PROMPT_SIZE} --quick)")
    parser.add_argument(
        "--include_emulated_bf16", action="store_true", help="Also time bf16 on CPUs without native bf16 (slow)."
    )
    add_reference_arguments(parser)
    parser.add_argument("--measure", nargs=2, metavar=("SAM_DIR", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", nargs=2, metavar=("SAM_DIR", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    prompt_size = args.prompt_size or (QUICK_PROMPT_SIZE if args.quick else PROMPT_SIZE)
    if args.measure or args.breakdown:
        keep_freed_cpu_memory()  # as autosam-predict and autosam-eval do
    if args.measure:
        print(json.dumps(measure_modes(*args.measure, args.modes, args.images, device, prompt_size)))
        return
    if args.breakdown:
        print(json.dumps(breakdown(*args.breakdown, device, prompt_size)))
        return

    size = "small" if args.quick else "vit_b"
    sam_dir = str(sam_checkpoint(size))
    script = ["-m", "benchmarks.bench_inference", "--images", str(args.images), "--device", str(device)]
    script += ["--prompt_size", str(prompt_size)]
    result = {
        "machine": machine(),
        "device": str(device),
        "native_bf16": cpu_has_native_bfloat16(),
        "sam": size,
        "g": f"HarDNet-85 at {prompt_size}",
        "images": args.images,
        "batch_size": 1,
        "modes": {},
        "breakdown": {},
    }
    if args.quick:  # it only checks that the benchmark runs: every part in this process, no process starts
        keep_freed_cpu_memory()
    for precision in precisions_to_run(args.include_emulated_bf16, device):
        if args.quick:
            measured = measure_modes(sam_dir, precision, list(MODES), args.images, device, prompt_size)
            result["breakdown"][precision] = breakdown(sam_dir, precision, device, prompt_size)
        else:
            # One process per mode on CPUs (its own peak memory); GPUs report each mode's peak themselves.
            measured = {}
            for modes in [[mode] for mode in MODES] if device.type == "cpu" else [list(MODES)]:
                measured |= run_python_json([*script, "--measure", sam_dir, precision, "--modes", *modes])
            result["breakdown"][precision] = run_python_json([*script, "--breakdown", sam_dir, precision])
        result["modes"] |= {f"{mode} {precision}": figures for mode, figures in measured.items()}
        full = result["modes"][f"autosam {precision}"]["seconds_per_image"]
        for mode in MODES:
            entry = result["modes"][f"{mode} {precision}"]
            entry["speedup_vs_autosam_same_precision"] = full / entry["seconds_per_image"]
        print(json.dumps({precision: result["modes"]}, indent=2), flush=True)
    if args.reference_dir:
        references = measure_reference_runs(
            args.reference_dir,
            "inference",
            prompt_size=prompt_size,
            batch_size=1,
            repeats=args.images,
            device=str(device),
            tiny_sam=args.quick,
            pythonpath=args.reference_pythonpath,
        )
        for key, reference in references.items():
            result[key] = reference
            if "error" not in reference and reference["sam"] == size:  # same sizes, same run: a fair ratio
                for name in ("autosam fp32", "surrogate fp32"):
                    entry = result["modes"][name]
                    entry[f"speedup_vs_{key}"] = reference["seconds_per_image"] / entry["seconds_per_image"]
            print(json.dumps({key: reference}, indent=2), flush=True)
    write_result(args.name or default_result_name("inference", args.quick), result)


if __name__ == "__main__":
    main()
