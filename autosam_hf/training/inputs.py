"""What a training run reads: the train and validation splits (never test), the model to start from, and the
SAM embedding cache of the training views."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from accelerate import Accelerator
from transformers import PreTrainedConfig

from ..data import (
    EmbeddingCache,
    JointAugmentation,
    augmentation_for_level,
    load_hub_dataset,
    load_preset_dataset,
    train_val_split,
)
from ..data.embedding_cache import STORAGE_DTYPES
from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from ..model.sam_loading import DENSE_PROMPT_SAM_CONFIG_NAME, dense_prompt_sam_config, load_sam_config
from ..volumes import VolumeInput, read_volume_folder, slice_dataset, split_cases
from .settings import TrainingSettings

logger = logging.getLogger(__name__)

# The names Hub datasets give their validation split, in the order they are looked for.
HUB_VALIDATION_SPLITS = ("validation", "val", "valid")


def load_train_val(settings: TrainingSettings) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Train and validation splits: the dataset's own validation split, else a seeded part of train. Test splits
    are never read here. Masks are read as the run's classes need (`TrainingSettings.mask_classes`); volumes are
    read as slices (`load_volume_slices`)."""
    if settings.volume_input is not None:
        return load_volume_slices(settings)
    preset = settings.dataset_preset()
    classes = settings.mask_classes()
    val = None
    if settings.dataset_name:
        if classes.boundary_width is not None:
            raise ValueError(f"--dataset_name: preset {preset.name!r} derives its classes from folders; give --data")
        hub = {"column_mapping": settings.column_mapping, "num_labels": classes.num_labels}
        train = load_hub_dataset(settings.dataset_name, split="train", **hub)
        val_split = hub_validation_split(settings.dataset_name)
        if val_split is not None:  # its data errors are the user's to see, not a reason to split train instead
            val = load_hub_dataset(settings.dataset_name, split=val_split, **hub)
            logger.info("validation: the %r split of %s", val_split, settings.dataset_name)
    else:
        if not Path(settings.data).is_dir():
            raise FileNotFoundError(f"--data {settings.data}: no such folder")
        # A preset with a val folder in its own layout may be given another (PraNet's has none).
        has_val_folder = preset.has_val_split and any(
            (Path(settings.data) / name).is_dir() for name in preset.split_dirs["val"]
        )
        # Truncated splits are read truncated (quick runs decode only what they use); train is split whole.
        train_limit = settings.max_train_samples if has_val_folder else None
        train = load_preset_dataset(preset, "train", settings.data, classes=classes, max_samples=train_limit)
        if has_val_folder:
            val = load_preset_dataset(
                preset, "val", settings.data, classes=classes, max_samples=settings.max_eval_samples
            )
            logger.info("validation: the val split of %s", settings.data)
        elif preset.has_val_split and settings.preset is not None:
            folders = ", ".join(preset.split_dirs["val"])
            logger.warning("no val folder (%s) under %s: holding out part of train instead", folders, settings.data)
    if val is None:
        split = train_val_split(train, val_fraction=settings.val_fraction, seed=settings.val_split_seed)
        train, val = split["train"], split["val"]
        logger.info(
            "validation: %d of the %d training images (--val_fraction %g)",
            len(val),
            len(split["train"]) + len(val),
            settings.val_fraction,
        )
    if settings.max_train_samples:
        train = train.select(range(min(settings.max_train_samples, len(train))))
    if settings.max_eval_samples:
        val = val.select(range(min(settings.max_eval_samples, len(val))))
    return train, val


def load_volume_slices(settings: TrainingSettings) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Train and validation slices of a folder of volumes, split BY VOLUME (`split_cases`: a seeded
    `--val_fraction` of the cases; the slices of one case are all on one side), each case sliced as the run's
    `volume_input` says; `--max_train_samples` / `--max_eval_samples` count slices."""
    dataset = read_volume_folder(settings.data)
    train_cases, val_cases = split_cases(dataset.train, settings.val_fraction, settings.val_split_seed)
    logger.info(
        "validation: %d of the %d volumes (--val_fraction %g): %s",
        len(val_cases),
        len(dataset.train),
        settings.val_fraction,
        ", ".join(case.case_id for case in val_cases),
    )
    volume_input = VolumeInput.from_dict(settings.volume_input)
    slices = {"volume_input": volume_input, "num_classes": settings.num_labels - 1, "seed": settings.seed}
    slices["empty_slice_fraction"] = settings.empty_slice_fraction
    train = slice_dataset(train_cases, dataset.id2label, max_slices=settings.max_train_samples, **slices)
    val = slice_dataset(val_cases, dataset.id2label, max_slices=settings.max_eval_samples, **slices)
    return train, val


def hub_validation_split(name: str) -> str | None:
    """The name of a Hub dataset's validation split, if it has one."""
    splits = datasets.get_dataset_split_names(name)
    return next((split for split in HUB_VALIDATION_SPLITS if split in splits), None)


def build_model(settings: TrainingSettings) -> AutoSamForSegmentation:
    """A fresh g (and h) around the frozen SAM of `--sam`, or a trained AutoSAM folder (`--init_from`), for the
    run's classes."""
    if settings.init_from:
        model = AutoSamForSegmentation.from_pretrained(settings.init_from)
        if model.config.id2label != settings.id2label:
            raise ValueError(
                f"--init_from {settings.init_from} predicts the classes {model.config.id2label}, but this run trains "
                f"{settings.id2label} (from --preset / --class_names)"
            )
    else:
        backbone_weights = True if settings.backbone_weights == "timm" else settings.backbone_weights
        model = AutoSamForSegmentation.from_sam(
            standalone_sam_config(settings) if settings.stages == ("standalone",) else settings.sam,
            revision=settings.sam_revision,
            backbone=settings.backbone,
            backbone_weights=backbone_weights,
            prompt_input_size=settings.prompt_input_size,
            id2label=settings.id2label,
        )
    for name in ("canvas_rule", "class_activation", "bce_loss_weight", "dice_loss_weight", "volume_input"):
        if getattr(settings, name) is not None:
            setattr(model.config, name, getattr(settings, name))
    return model


def standalone_sam_config(settings: TrainingSettings) -> PreTrainedConfig:
    """What a SAM-free model is built around: `--sam`'s config only (h(g(I)) reads its dense-prompt shape, never its
    weights), else `dense_prompt_sam_config` (SAM ViT-B/L/H's 256x64x64) where no config can be had."""
    try:
        return load_sam_config(settings.sam, revision=settings.sam_revision)
    except ValueError as error:
        logger.warning("--stage standalone: %s; using %s instead", error, DENSE_PROMPT_SAM_CONFIG_NAME)
        return dense_prompt_sam_config()


def build_processor(settings: TrainingSettings, model: AutoSamForSegmentation) -> AutoSamImageProcessor:
    """The model's processor; a SAM-free model (`standalone`) builds only g's canvas by default."""
    canvases = ["prompt"] if settings.stages == ("standalone",) else None
    return AutoSamImageProcessor.from_model_config(model.config, canvases=canvases)


def training_augmentation(settings: TrainingSettings) -> JointAugmentation:
    """The run's augmentation (its preset's settings at `--augmentation`'s level), seeded: the training views and
    the embedding cache draw the same view of each (image, index, view)."""
    reference = settings.dataset_preset().augmentation
    return JointAugmentation(augmentation_for_level(reference, settings.augmentation), seed=settings.seed)


def run_processes(settings: TrainingSettings) -> Accelerator:
    """The run's processes. Built as an Accelerator because only that reads `accelerate launch`'s CPU setting: a bare
    `PartialState()` made first under ACCELERATE_USE_CPU=1 sees one process in each, and its barriers wait for none."""
    return Accelerator(mixed_precision=settings.mixed_precision)


def build_caches(
    settings: TrainingSettings,
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    train_dataset: datasets.Dataset,
    val_dataset: datasets.Dataset,
) -> tuple[EmbeddingCache, EmbeddingCache]:
    """SAM embeddings of every training view and of the validation images, computed once (sharded across
    processes) and read back memory-mapped every epoch."""
    accelerator = run_processes(settings)
    model.to(accelerator.device)
    # Embeddings computed in reduced precision differ from fp32 ones: keep them apart.
    cache_dir = Path(settings.cache_dir) / f"precision-{accelerator.mixed_precision}"
    augmentation = training_augmentation(settings)
    storage_dtype = STORAGE_DTYPES[settings.cache_dtype]
    with accelerator.autocast():
        train_cache = EmbeddingCache.build(
            train_dataset,
            model,
            processor,
            cache_dir,
            augmentation=augmentation,
            num_views=settings.num_views,
            batch_size=settings.eval_batch_size,
            storage_dtype=storage_dtype,
            accelerator=accelerator,
            num_workers=settings.dataloader_num_workers,
        )
        val_cache = EmbeddingCache.build(
            val_dataset,
            model,
            processor,
            cache_dir,
            batch_size=settings.eval_batch_size,
            storage_dtype=storage_dtype,
            accelerator=accelerator,
            num_workers=settings.dataloader_num_workers,
        )
    return train_cache, val_cache
