"""Benchmark 4: does h(g(I)) learn on real medical images? Same CPU budget as a plain U-Net, on Kvasir-SEG.

Both models train from scratch (no ImageNet weights: none can be fetched here) on `kvasir/train` with the same
data pipeline (reference polyp augmentation, g's 352 canvas, 256×256 labels, the unpadded-region BCE + Dice loss,
Adam 3e-4 / 1e-5, batch 8, bf16 autocast, channels-last), each for the same wall-clock budget on the same number of
threads. The best epoch is picked on `kvasir/val`; Dice and IoU are reported once, on `kvasir/test`, at the
images' original resolution.

  - ours: `autosam-train --stage standalone` (g = HarDNet-85 + its decoder, h = the surrogate decoder; no SAM);
  - baseline: `unet_baseline.UNet` (32 base channels, 4 levels) in a minimal loop below.

    python benchmarks/bench_real_data.py --minutes 20 --threads 1   # both run side by side, 1 thread each
    python benchmarks/bench_real_data.py --models ours --threads 2 --name real_data_ours_alone  # whole machine
    python benchmarks/bench_real_data.py --quick                    # 0.3 minutes on 16 images (smoke test)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DATA_DIR, RESULTS_DIR, machine, run_python, sam_checkpoint, write_result

BATCH_SIZE = 8


def evaluate_probabilities(predict, processor, dataset, batch_size: int = 8) -> dict[str, float]:
    """Mean per-image Dice/IoU at original resolution; `predict(pixel_values) -> (B, 1, 256, 256) logits`."""
    from autosam_hf.metrics import SegmentationMetrics
    from autosam_hf.model import binarize_mask

    metrics = SegmentationMetrics()
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        inputs = processor(images=list(rows["image"]), return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = predict(inputs["pixel_values"]).float()
        for mask_logits, mask in zip(
            processor.post_process_logits(logits, inputs["original_sizes"]), rows["mask"], strict=True
        ):
            metrics.update((mask_logits > 0).numpy(), binarize_mask(mask))
    result = metrics.compute()
    return {"dice": result["dice"], "iou": result["iou"]}


def train_unet(minutes: float, max_train: int | None, seed: int = 42) -> dict:
    """The baseline: a U-Net trained with the same data, loss, optimiser and budget; best epoch on val."""
    from accelerate.utils import set_seed
    from transformers import SamConfig
    from unet_baseline import UNet

    from autosam_hf.data import JointAugmentation, get_preset, load_preset_dataset
    from autosam_hf.data.torch_dataset import AutoSamViewDataset
    from autosam_hf.model import AutoSamImageProcessor, masked_segmentation_loss

    set_seed(seed)
    preset = get_preset("kvasir")
    data = DATA_DIR / "kvasir"
    train, val, test = (load_preset_dataset("kvasir", split, data) for split in ("train", "val", "test"))
    if max_train:
        train, val, test = train.select(range(max_train)), val.select(range(8)), test.select(range(8))
    processor = AutoSamImageProcessor.from_sam_config(SamConfig(), image_size=preset.image_size)
    dataset = AutoSamViewDataset(train, processor, JointAugmentation(preset.augmentation, seed=seed))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
    model = UNet(out_size=256).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=preset.training.learning_rate, weight_decay=preset.training.weight_decay
    )
    started, epoch, steps, best, history = time.monotonic(), 0, 0, None, []
    while time.monotonic() - started < 60 * minutes:
        dataset.set_epoch(epoch)
        model.train()
        for batch in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(batch["pixel_values"].contiguous(memory_format=torch.channels_last))
            loss = masked_segmentation_loss(logits, batch["labels"], batch["valid_mask"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
            if time.monotonic() - started > 60 * minutes:
                break
        model.eval()
        scores = evaluate_probabilities(model, processor, val)
        history.append({"epoch": epoch, "steps": steps, **{f"val_{k}": v for k, v in scores.items()}})
        print(json.dumps(history[-1]), flush=True)
        if best is None or scores["dice"] > best[0]["dice"]:
            best = (scores, copy.deepcopy(model.state_dict()), epoch)
        epoch += 1
    model.load_state_dict(best[1])
    model.eval()
    return {
        "test": evaluate_probabilities(model, processor, test),
        "validation": best[0],
        "best_epoch": best[2],
        "epochs": epoch,
        "steps": steps,
        "history": history,
    }


def train_ours(minutes: float, max_train: int | None, threads: int, workdir: Path) -> dict:
    """`autosam-train --stage standalone` under the same budget, then scored on test in surrogate mode."""
    output_dir = workdir / "autosam_standalone"
    limits = ["--max_train_samples", str(max_train), "--max_eval_samples", "8"] if max_train else []
    run_python(
        [
            "-m",
            "autosam_hf.train",
            "--sam",
            str(sam_checkpoint("vit_b")),
            "--preset",
            "kvasir",
            "--data",
            str(DATA_DIR / "kvasir"),
            "--output_dir",
            str(output_dir),
            "--stage",
            "standalone",
            "--per_device_train_batch_size",
            str(BATCH_SIZE),
            "--num_train_epochs",
            "100000",
            "--max_train_minutes",
            str(minutes),
            "--mixed_precision",
            "bf16",
            "--checkpointing_steps",
            "100000000",
            "--num_overlays",
            "4",
            *limits,
        ],
        threads=threads,
        timeout=int(60 * minutes * 3 + 1800),
    )
    return json.loads(
        run_python(
            [str(Path(__file__).resolve()), "--score", str(output_dir), *(["--quick"] if max_train else [])],
            threads=threads,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def score_ours(output_dir: str, quick: bool) -> dict:
    from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
    from autosam_hf.data import load_preset_dataset

    model = AutoSamForSegmentation.from_pretrained(output_dir).eval()
    processor = AutoSamImageProcessor.from_pretrained(output_dir)
    test = load_preset_dataset("kvasir", "test", DATA_DIR / "kvasir")
    test = test.select(range(8)) if quick else test
    results = json.loads((Path(output_dir) / "all_results.json").read_text())
    save_test_overlays(model, processor, test, RESULTS_DIR / f"real_data{'_quick' if quick else ''}_test_overlays.png")
    log = [json.loads(line) for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines()]
    return {
        "test": evaluate_probabilities(
            lambda pixels: model(pixel_values=pixels, mode="surrogate").logits, processor, test
        ),
        "validation": results["validation"]["kvasir"],
        "best_epoch": results["stages"]["standalone"]["epoch"],
        "epochs": 1 + max(r["epoch"] for r in log),
        "steps": max(r["step"] for r in log),
        "history": [r for r in log if "val_dice" in r],
    }


def save_test_overlays(model, processor, test, path: Path, count: int = 4) -> None:
    """Image, ground truth (green) and h(g(I)) (red) for the first test images: the README's picture."""
    from autosam_hf.model import binarize_mask
    from autosam_hf.predict import predict_images
    from autosam_hf.visualization import save_overlay_grid

    rows = test.select(range(min(count, len(test))))
    images = [image.convert("RGB") for image in rows["image"]]
    probabilities = predict_images(model, processor, images, mode="surrogate", autocast_dtype=torch.bfloat16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_overlay_grid(images, [binarize_mask(m) for m in rows["mask"]], [p > 0.5 for p in probabilities], path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1, help="Threads per model; both models train at once.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=["ours", "unet"],
        default=["ours", "unet"],
        help="Which models to train (side by side when both).",
    )
    parser.add_argument("--name", default=None, help="Result file name (default real_data[_quick]).")
    parser.add_argument("--unet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--score", help=argparse.SUPPRESS)
    args = parser.parse_args()
    minutes, max_train = (0.3, 16) if args.quick else (args.minutes, None)
    if args.score:
        print(json.dumps(score_ours(args.score, args.quick)))
        return
    if args.unet:
        print(json.dumps(train_unet(minutes, max_train)))
        return

    import concurrent.futures

    result = {"machine": machine(), "minutes_per_model": minutes, "threads_per_model": args.threads}
    with tempfile.TemporaryDirectory() as workdir, concurrent.futures.ThreadPoolExecutor(2) as pool:
        unet_flags = ["--unet", "--minutes", str(minutes), *(["--quick"] if args.quick else [])]
        timeout = int(60 * minutes * 3 + 1800)
        if "unet" in args.models:
            unet = pool.submit(run_python, [str(Path(__file__).resolve()), *unet_flags], args.threads, timeout)
        if "ours" in args.models:
            result["autosam_surrogate_h_of_g"] = pool.submit(
                train_ours, minutes, max_train, args.threads, Path(workdir)
            ).result()
        if "unet" in args.models:
            result["unet"] = json.loads(unet.result().stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    write_result(args.name or ("real_data_quick" if args.quick else "real_data"), result)


if __name__ == "__main__":
    sys.exit(main())
