"""What a training run leaves in its output folder, each file written whole (temporary file or folder, then rename):

model.safetensors, config.json, preprocessor_config.json, *.py   the model, ready for from_pretrained / the Hub
all_results.json                                                 best validation Dice/IoU per stage (and class)
training_settings.json                                           the resolved settings (recipe + overrides)
training_args.yaml                                               the options given (`checkpoints.RunState`)
train_log.jsonl, training_curves.png                             loss per step, validation per epoch
validation_overlays_<mode>.png                                   image | ground truth | prediction
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import datasets
import torch

from ..atomic_write import write_atomically
from ..model import AutoSamForSegmentation, AutoSamImageProcessor, mask_to_labels
from ..model.image_processing_autosam import canvases_for_mode
from ..postprocessing import model_predictions
from ..runtime import model_inputs_for, use_fast_memory_format
from ..visualization import plot_training_curves, save_overlay_grid
from .options import STAGE_MODE, card_settings
from .settings import TrainingSettings


def save_model(model: AutoSamForSegmentation, processor: AutoSamImageProcessor, output_dir: Path) -> None:
    """save_pretrained into a temporary folder, then move each file into `output_dir` (which holds the run's other
    outputs, so it cannot be replaced whole): no file is ever half-written, and a failed save leaves nothing."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        for path in staging.iterdir():
            os.replace(path, output_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def draw_overlays(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    val_dataset: datasets.Dataset,
    path: Path,
    count: int,
    mode: str,
) -> None:
    """The first `count` validation images with their ground truth and the model's prediction in `mode` (label maps
    in a colour per class for multi-class models)."""
    rows = [val_dataset[i] for i in range(min(count, len(val_dataset)))]
    if not rows:
        return
    images = [row["image"].convert("RGB") for row in rows]
    use_fast_memory_format(model.eval())
    with torch.no_grad():
        inputs = processor(images=images, canvases=canvases_for_mode(mode), return_tensors="pt")
        logits = model(**model_inputs_for(model, inputs, processor.model_input_names), mode=mode).logits
    sizes = [image.size[::-1] for image in images]
    predictions = model_predictions(model, processor, logits, sizes)
    targets = [mask_to_labels(row["mask"], model.config.num_labels) for row in rows]
    label_maps = [prediction.label_map for prediction in predictions]
    save_overlay_grid(images, targets, label_maps, path, id2label=model.config.id2label)


def _validation_metrics(entry: dict) -> dict[str, float]:
    """The scores of a validation entry without their `val_` prefix: dice, iou [, dice_<class>, iou_<class>]."""
    return {key.removeprefix("val_"): value for key, value in entry.items() if key.startswith("val_")}


# What a model card shows of how its checkpoint was trained: the options marked `card` (options.py).
# (`training_settings.json` keeps everything, local paths such as --init_from included, which a public card should
# not.)
CARD_SETTINGS = card_settings()


def results_summary(
    settings: TrainingSettings, model: AutoSamForSegmentation, best: dict[str, dict], train_size: int, val_size: int
) -> dict:
    """`all_results.json`: {"validation": {<dataset>: {"dice", "iou"[, per class]}}} (the schema model cards read)
    holds AutoSAM's best when the prompt stage ran, else the last stage's; "validation_surrogate" holds h(g(I))'s
    best when a surrogate stage ran; "stages" every stage's best entry; "classes" the model's id2label; "training"
    the settings a model card shows (`CARD_SETTINGS`, those that were set)."""
    main_stage = "prompt" if "prompt" in best else settings.stages[-1]
    dataset = settings.dataset_preset().name  # the preset's, or a folder's own name
    results = {
        "preset": settings.preset,
        "dataset": dataset,
        "sam": model.config.sam_name_or_path,  # --sam, or the --init_from model's own
        "recipe": settings.recipe,
        "train_examples": train_size,
        "validation_examples": val_size,
        "classes": settings.id2label,
        "stages": best,
        "validation": {dataset: _validation_metrics(best[main_stage])},
        "training": {key: getattr(settings, key) for key in CARD_SETTINGS if getattr(settings, key) is not None},
    }
    last = settings.stages[-1]
    if STAGE_MODE[last] == "surrogate":
        results["validation_surrogate"] = {dataset: _validation_metrics(best[last])}
    return results


def write_outputs(
    settings: TrainingSettings,
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    val_dataset: datasets.Dataset,
    results: dict,
) -> None:
    """Everything in the module docstring, for a model whose best weights are loaded. Main process only."""
    output_dir = Path(settings.output_dir)
    model.config.default_mode = "surrogate" if settings.stages == ("standalone",) else "autosam"
    save_model(model, processor, output_dir)
    results_json, settings_json = json.dumps(results, indent=2), settings.to_json()
    write_atomically(output_dir / "all_results.json", lambda path: path.write_text(results_json))
    write_atomically(output_dir / "training_settings.json", lambda path: path.write_text(settings_json))
    plot_training_curves(output_dir / "train_log.jsonl", output_dir / "training_curves.png")
    for mode in dict.fromkeys(STAGE_MODE[stage] for stage in settings.stages):
        path = output_dir / f"validation_overlays_{mode}.png"
        draw_overlays(model, processor, val_dataset, path, settings.num_overlays, mode)
