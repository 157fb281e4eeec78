"""Benchmarks 2 and 3: inference cost per image for each mode, and where the time of one AutoSAM forward goes.

Modes, on the same Kvasir test images at the SAM ViT-B configuration (random weights):
  - `autosam`: full AutoSAM (SAM encoder + g + SAM mask decoder), through `autosam_hf.predict.predict_images`;
  - `surrogate`: h(g(I)), SAM not run (the `--fast` path of autosam-predict);
  - `sam_point`: plain SAM given one point prompt (the image centre), as SAM is used without AutoSAM.
Each (mode, precision) runs in a fresh process, so its peak resident memory is its own.

    python benchmarks/bench_inference.py           # ViT-B, 4 images per mode
    python benchmarks/bench_inference.py --quick   # small SAM, 2 images (< 1 minute)
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from common import DATA_DIR, machine, run_python, sam_checkpoint, write_result

from autosam_hf.runtime import cpu_has_native_bfloat16, dtype_is_native

CPU = torch.device("cpu")

MODES = ("autosam", "surrogate", "sam_point")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def precisions_to_run(include_emulated: bool) -> list[str]:
    """fp32, and bf16 where the CPU computes it natively (emulated bf16 costs minutes and says nothing)."""
    return [name for name, dtype in PRECISIONS.items() if include_emulated or dtype_is_native(dtype, CPU)]


def load_images(count: int):
    from PIL import Image

    paths = sorted((DATA_DIR / "kvasir" / "test" / "images").iterdir())[:count]
    return [Image.open(path).convert("RGB") for path in paths]


def measure_one(sam_dir: str, mode: str, precision: str, count: int) -> dict:
    """In this process: latency per image (batch 1, after one warm-up image) and peak memory."""
    from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
    from autosam_hf.predict import predict_images

    torch.manual_seed(0)
    model = AutoSamForSegmentation.from_sam(sam_dir, prompt_input_size=352).eval()
    processor = AutoSamImageProcessor.from_sam_config(model.config.sam_config)
    images = load_images(count + 1)
    dtype = PRECISIONS[precision]

    def run(image):
        if mode == "sam_point":
            inputs = processor(images=image, return_tensors="pt")
            height, width = inputs["reshaped_input_sizes"][0].tolist()
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                outputs = model.sam(
                    pixel_values=inputs["pixel_values"],
                    input_points=torch.tensor([[[[width / 2, height / 2]]]]),
                    input_labels=torch.ones(1, 1, 1, dtype=torch.long),
                    multimask_output=False,
                )
            return processor.post_process_logits(outputs.pred_masks[:, 0].float(), inputs["original_sizes"])
        return predict_images(model, processor, [image], mode=mode, batch_size=1, autocast_dtype=dtype)

    run(images[0])  # warm-up: first-call allocations and kernel selection
    started = time.perf_counter()
    for image in images[1:]:
        run(image)
    latency = (time.perf_counter() - started) / count
    return {
        "seconds_per_image": latency,
        "images_per_second": 1 / latency,
        "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def breakdown(sam_dir: str, precision: str, repeats: int = 2) -> dict:
    """Seconds spent in SAM's encoder, g, SAM's mask decoder and h for one image (batch 1)."""
    from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor

    model = AutoSamForSegmentation.from_sam(sam_dir, prompt_input_size=352).eval()
    processor = AutoSamImageProcessor.from_sam_config(model.config.sam_config)
    pixel_values = processor(images=load_images(1), return_tensors="pt")["pixel_values"]
    dtype = PRECISIONS[precision]
    parts = {
        "sam_image_encoder": lambda state: state.update(image=model.get_image_embeddings(pixel_values)),
        "prompt_generator_g": lambda state: state.update(prompt=model.prompt_generator(pixel_values)),
        "sam_mask_decoder": lambda state: model.decode_masks(state["image"], state["prompt"]),
        "surrogate_decoder_h": lambda state: model.surrogate_decoder(state["prompt"]),
    }
    seconds = {name: [] for name in parts}
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        for _ in range(repeats + 1):  # the first round warms up
            state = {}
            for name, part in parts.items():
                started = time.perf_counter()
                part(state)
                seconds[name].append(time.perf_counter() - started)
    best = {name: min(times[1:]) for name, times in seconds.items()}
    autosam = best["sam_image_encoder"] + best["prompt_generator_g"] + best["sam_mask_decoder"]
    return {name: {"seconds": value, "share_of_autosam_forward": value / autosam} for name, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument(
        "--include_emulated_bf16", action="store_true", help="Also time bf16 on CPUs without native bf16 (slow)."
    )
    parser.add_argument("--single", nargs=3, metavar=("SAM_DIR", "MODE", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", nargs=2, metavar=("SAM_DIR", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = args.images or (2 if args.quick else 4)
    if args.single:
        print(json.dumps(measure_one(*args.single, count)))
        return
    if args.breakdown:
        print(json.dumps(breakdown(*args.breakdown)))
        return

    size = "small" if args.quick else "vit_b"
    sam_dir = str(sam_checkpoint(size))
    script = [str(Path(__file__).resolve())]
    result = {
        "machine": machine(),
        "native_bf16": cpu_has_native_bfloat16(),
        "sam": size,
        "images": count,
        "batch_size": 1,
        "modes": {},
        "breakdown": {},
    }
    for precision in precisions_to_run(args.include_emulated_bf16):
        for mode in MODES:
            output = run_python([*script, "--images", str(count), "--single", sam_dir, mode, precision])
            result["modes"][f"{mode} {precision}"] = json.loads(output.stdout.strip().splitlines()[-1])
        full = result["modes"][f"autosam {precision}"]["seconds_per_image"]
        for mode in MODES:
            entry = result["modes"][f"{mode} {precision}"]
            entry["speedup_vs_autosam_same_precision"] = full / entry["seconds_per_image"]
        output = run_python([*script, "--breakdown", sam_dir, precision])
        result["breakdown"][precision] = json.loads(output.stdout.strip().splitlines()[-1])
        print(json.dumps({precision: result["modes"]}, indent=2), flush=True)
    write_result("inference_quick" if args.quick else "inference", result)


if __name__ == "__main__":
    main()
