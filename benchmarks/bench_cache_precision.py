"""Benchmark 5: is float16 storage of the SAM embedding cache harmless?

For real Kvasir-SEG validation images, SAM's image embeddings are computed in float32, stored as the cache stores
them (float16, then read back as float32), and both versions go through the same frozen mask decoder with the same
dense prompt from g. Reported per SAM size: the largest |Δ| of the decoder's mask logits (absolute, and relative to
the largest |logit|), the share of pixels whose mask changes, and the change of per-image Dice against the ground
truth (mean and largest). Weights are random (none can be fetched here); every SAM weight is perturbed (seeded) so
embeddings and logits are O(1) rather than the ~1e-5 of SAM's initialisation, and the masks are not trivially empty.

    python -m benchmarks.bench_cache_precision           # tiny SAM on all 100 val images, ViT-B on 8
    python -m benchmarks.bench_cache_precision --quick   # tiny SAM on 4 images
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.metrics import dice_iou_per_image
from autosam_hf.model import binarize_mask
from autosam_hf.runtime import use_fast_memory_format
from benchmarks.common import default_result_name, kvasir_split, machine, sam_checkpoint, write_result


def perturbed_model(size: str, seed: int = 0) -> AutoSamForSegmentation:
    torch.manual_seed(seed)
    model = AutoSamForSegmentation.from_sam(str(sam_checkpoint(size)), prompt_input_size=352)
    use_fast_memory_format(model.eval())
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.sam.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


@torch.no_grad()
def compare(size: str, images: int) -> dict:
    model = perturbed_model(size)
    processor = AutoSamImageProcessor.from_model_config(model.config)
    rows = kvasir_split("val", images)
    max_abs, max_logit, changed, pixels, dice_changes = 0.0, 0.0, 0, 0, []
    for row in rows:
        inputs = processor(images=row["image"].convert("RGB"))
        embeddings = model.get_image_embeddings(inputs["pixel_values"])
        stored = embeddings.to(torch.float16).to(torch.float32)  # what a float16 cache hands back
        prompt = model.prompt_generator(inputs["prompt_pixel_values"])
        exact, half = (model.decode_masks(e, prompt)[0] for e in (embeddings, stored))
        max_abs = max(max_abs, (exact - half).abs().max().item())
        max_logit = max(max_logit, exact.abs().max().item())
        target = binarize_mask(row["mask"])
        masks = [processor.post_process_logits(logits, inputs["original_sizes"])[0] > 0 for logits in (exact, half)]
        changed += int((masks[0] != masks[1]).sum())
        pixels += masks[0].numel()
        dice_changes.append(
            dice_iou_per_image(masks[1].numpy(), target)[0] - dice_iou_per_image(masks[0].numpy(), target)[0]
        )
    return {
        "images": images,
        "max_abs_logit_difference": max_abs,
        "max_abs_logit": max_logit,
        "relative_difference": max_abs / max_logit,
        "changed_pixel_share": changed / pixels,
        "mean_dice_change": float(np.mean(dice_changes)),
        "max_abs_dice_change": float(np.max(np.abs(dice_changes))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--name",
        help="Result EXPERIMENT/RUN (default cache_precision/latest, or quick).",
    )
    args = parser.parse_args()
    sizes = {"tiny_encoder": 4} if args.quick else {"tiny_encoder": 100, "vit_b": 8}
    result = {"machine": machine(), "storage": "float16", "sizes": {}}
    for size, images in sizes.items():
        result["sizes"][size] = compare(size, images)
        print(json.dumps({size: result["sizes"][size]}, indent=2), flush=True)
    write_result(args.name or default_result_name("cache_precision", args.quick), result)


if __name__ == "__main__":
    main()
