"""Throughput of the batched paths: full AutoSAM and h(g(I)) over a folder of images (`iter_predictions`, batched,
its batches prepared by threads while the model runs), and the embedding-cache build (SAM's encoder, batched, its
files written by a thread), each with the processor's canvases (PIL, on the CPU) and with the canvases built on the
model's device from uint8 images (`autosam_hf.model.device_canvas`); for each, images/s, the FLOPs per image
(`torch.utils.flop_counter.FlopCounterMode`) and the fraction of the accelerator's dense bf16 peak they reach, and
each stage's share of the wall time.

    python -m benchmarks.bench_throughput --device cuda   # released shapes: vit_b, g at 352, batch 16, bf16
    python -m benchmarks.bench_throughput --device cpu    # tiny sizes, fp32: the code paths (the smoke test)

`python -m benchmarks.run_all --quick-gpu` runs it after `bench_gpu_path`. Stages (`stage_shares`, one pass over the
images, each stage timed alone, the device synchronised after it): `prepare` (the processor: resize, normalise,
pad, on the CPU), `model` (the forward on the device, inputs copied there), `postprocess` (resize to the original
size, threshold, copy back); with the device canvas, `prepare` is the uint8 conversion and the canvas built on the
device. The peak is the GPU's dense bf16 rate from its data sheet (`BF16_PEAK_TFLOPS`); on a
CPU there is none to compare with (None).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.data import JointAugmentation
from autosam_hf.data.embedding_cache import EmbeddingCache
from autosam_hf.inference import iter_predictions
from autosam_hf.model.device_canvas import preprocess_on_device
from autosam_hf.model.image_processing_autosam import canvases_for_mode, to_rgb_uint8
from autosam_hf.postprocessing import model_predictions
from autosam_hf.runtime import (
    DTYPES,
    describe_machine,
    inference_autocast,
    model_inputs_for,
    preparation_workers,
    use_fast_memory_format,
)
from benchmarks.common import kvasir_split, machine, sam_checkpoint, synchronizer, write_result

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets, by a name's substring.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
MODES = ("autosam", "surrogate")
CANVASES = {"processor": False, "device": True}  # where the canvases are built: iter_predictions' device_canvas


@dataclass(frozen=True)
class Sizes:
    sam: str
    prompt_size: int
    batch_size: int
    images: int
    precision: str


SIZES = {"cuda": Sizes("vit_b", 352, 16, 64, "bfloat16"), "cpu": Sizes("small", 64, 2, 2, "float32")}


def bf16_peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, where known (NVIDIA GPUs of `BF16_PEAK_TFLOPS`); None elsewhere."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in BF16_PEAK_TFLOPS.items() if key in name), None)


def flops_per_image(run, images: int) -> float:
    """FLOPs of `run()` (FlopCounterMode: matmuls and convolutions), per image of the `images` it handles."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / images


def figures(seconds: float, images: int, flops: float, peak: float | None) -> dict:
    images_per_second = images / seconds
    return {
        "seconds": seconds,
        "images_per_second": images_per_second,
        "gflops_per_image": flops / 1e9,
        "fraction_of_bf16_peak": None if peak is None else images_per_second * flops / peak,
    }


def stage_shares(model, processor, images: list, mode: str, batch_size: int, dtype, device_canvas: bool) -> dict:
    """Seconds and share of the wall time of each stage (module docstring), one pass over `images`."""
    synchronize = synchronizer(model.device)
    seconds = {"prepare": 0.0, "model": 0.0, "postprocess": 0.0}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        began = time.perf_counter()
        if device_canvas:
            pixels = [to_rgb_uint8(image) for image in batch]
            inputs = preprocess_on_device(processor, pixels, model.device, canvases_for_mode(mode))
            synchronize()
        else:
            inputs = processor(batch, canvases=canvases_for_mode(mode), return_tensors="pt")
        prepared = time.perf_counter()
        with inference_autocast(model.device, dtype):
            logits = model(**model_inputs_for(model, inputs, processor.model_input_names), mode=mode).logits
        synchronize()
        ran = time.perf_counter()
        model_predictions(model, processor, logits, inputs["original_sizes"])
        finished = time.perf_counter()
        seconds["prepare"] += prepared - began
        seconds["model"] += ran - prepared
        seconds["postprocess"] += finished - ran
    total = sum(seconds.values())
    return {stage: {"seconds": value, "share": value / total} for stage, value in seconds.items()}


def measure_inference(model, processor, images: list, sizes: Sizes, peak: float | None) -> dict:
    """Each mode over the images, with the processor's canvases (`workers`, `stages`) and with the canvases built
    on the device (`device_canvas`: the same two): images/s with 0 and the device's default preparation threads,
    FLOPs, stages."""
    dtype = None if sizes.precision == "float32" else DTYPES[sizes.precision]
    synchronize = synchronizer(model.device)
    results = {}
    for mode in MODES:
        items = list(enumerate(images))

        def run(workers: int, device_canvas: bool, mode=mode, items=items) -> None:
            predictions = iter_predictions(
                model, processor, items, mode, sizes.batch_size, dtype, num_workers=workers,
                device_canvas=device_canvas,
            )  # fmt: skip
            for _ in predictions:
                pass

        one = model_inputs_for(model, processor(images[:1], return_tensors="pt"), processor.model_input_names)
        with inference_autocast(model.device, dtype):
            flops = flops_per_image(lambda: model(**one, mode=mode), 1)  # noqa: B023 (called at once)
        by_canvas = {}
        for canvas, device_canvas in CANVASES.items():
            if model.device.type != "cpu":  # warm-up: kernel selection, allocations (the CPU form is a smoke run)
                run(0, device_canvas)
            by_workers = {}
            for workers in sorted({0, preparation_workers(model.device)}):
                synchronize()
                started = time.perf_counter()
                run(workers, device_canvas)
                synchronize()
                by_workers[str(workers)] = figures(time.perf_counter() - started, len(images), flops, peak)
            stages = stage_shares(model, processor, images, mode, sizes.batch_size, dtype, device_canvas)
            by_canvas[canvas] = {"workers": by_workers, "stages": stages}
        results[mode] = {**by_canvas["processor"], "device_canvas": by_canvas["device"]}
    return results


def measure_cache_build(model, processor, dataset, sizes: Sizes, peak: float | None, device_canvas: bool) -> dict:
    """The embedding cache of `dataset` (one view each, float16 storage), built in a fresh folder (on a GPU twice,
    the first warming up), SAM's canvas made by the processor or on the device (`device_canvas`): images/s, and the
    encoder's FLOPs per image."""
    dtype = None if sizes.precision == "float32" else DTYPES[sizes.precision]
    enabled = dtype is not None
    device = model.device
    seconds = None
    for _ in range(1 if device.type == "cpu" else 2):  # the first run on a GPU warms up
        with tempfile.TemporaryDirectory() as cache_dir:
            synchronizer(device)()
            started = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=enabled):
                EmbeddingCache.build(
                    dataset, model, processor, cache_dir, JointAugmentation(), batch_size=sizes.batch_size,
                    show_progress=False, device_canvas=device_canvas,
                )  # fmt: skip
            seconds = time.perf_counter() - started
    canvas = processor([dataset[0]["image"]], canvases=("sam",), return_tensors="pt")["pixel_values"].to(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=enabled):
        flops = flops_per_image(lambda: model.image_features(canvas), 1)
    return figures(seconds, len(dataset), flops, peak)


def measure(device_name: str) -> dict:
    device = torch.device(device_name)
    sizes = SIZES[device.type]
    torch.manual_seed(0)
    model = AutoSamForSegmentation.from_sam(str(sam_checkpoint(sizes.sam)), prompt_input_size=sizes.prompt_size)
    model = use_fast_memory_format(model.eval().to(device))
    processor = AutoSamImageProcessor.from_model_config(model.config)
    dataset = kvasir_split("train", sizes.images)
    images = [row["image"].convert("RGB") for row in dataset]
    peak = bf16_peak_flops(device)
    return {
        "machine": machine(),
        "machine_details": describe_machine(),
        "device": device.type,
        **asdict(sizes),
        "bf16_peak_tflops": None if peak is None else peak / 1e12,
        "inference": measure_inference(model, processor, images, sizes, peak),
        "cache_build": measure_cache_build(model, processor, dataset, sizes, peak, device_canvas=False),
        "cache_build_device_canvas": measure_cache_build(model, processor, dataset, sizes, peak, device_canvas=True),
    }


def markdown(result: dict) -> str:
    """The result as one table: images/s, fraction of the bf16 peak and the stages' shares, per path."""

    def share(value):
        return "–" if value is None else f"{100 * value:.2g}%"

    lines = [
        f"Throughput ({result['device']}, {result['precision']}, SAM {result['sam']}, g at {result['prompt_size']}, "
        f"batch {result['batch_size']}, {result['images']} images; {result['machine']})",
        "",
        "| path | canvases | threads | images/s | GFLOP/image | of bf16 peak | prepare / model / postprocess |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for mode, figures_of_mode in result["inference"].items():
        for canvas, figures_of_canvas in (("processor", figures_of_mode), ("device", figures_of_mode["device_canvas"])):
            stages = " / ".join(share(stage["share"]) for stage in figures_of_canvas["stages"].values())
            for workers, row in figures_of_canvas["workers"].items():
                lines.append(
                    f"| {mode} over a folder | {canvas} | {workers} | {row['images_per_second']:.3g} "
                    f"| {row['gflops_per_image']:.4g} | {share(row['fraction_of_bf16_peak'])} | {stages} |"
                )
    for canvas, key in (("processor", "cache_build"), ("device", "cache_build_device_canvas")):
        build = result[key]
        lines.append(
            f"| cache build | {canvas} | – | {build['images_per_second']:.3g} | {build['gflops_per_image']:.4g} "
            f"| {share(build['fraction_of_bf16_peak'])} | – |"
        )
    return "\n".join(lines)


def result_name(device: str) -> str:
    return "throughput/quick" if torch.device(device).type == "cpu" else f"throughput/{torch.device(device).type}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--name", help="Result EXPERIMENT/RUN (default throughput/cuda; throughput/quick on a CPU).")
    args = parser.parse_args()
    result = measure(args.device)
    path = write_result(args.name or result_name(args.device), result)
    print(json.dumps({"result": str(path)}))
    print(markdown(result))


if __name__ == "__main__":
    main()
