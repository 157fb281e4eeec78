"""Loading a trained or published AutoSAM (model + image processor) from a folder or a Hub id."""

from __future__ import annotations

import logging
import os

from huggingface_hub.errors import EntryNotFoundError
from transformers.utils import IMAGE_PROCESSOR_NAME, cached_file

from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from ..runtime import use_fast_memory_format

logger = logging.getLogger(__name__)


def load_processor(
    name_or_path: str | os.PathLike, model: AutoSamForSegmentation, **hub_kwargs
) -> AutoSamImageProcessor:
    """The checkpoint's saved processor, or, when it has none (`preprocessor_config.json`), the one its config
    describes (`AutoSamImageProcessor.from_model_config`: the frozen model's canvases and preprocessing, g's input
    size), with a warning. Either way its `mask_threshold` and `num_labels` are
    the model's, so that `post_process_semantic_segmentation` (the pipeline's) binarises as the model does, ground
    truths are read as the model's classes, and a processor saved from here carries both."""
    try:
        has_processor = (
            cached_file(name_or_path, IMAGE_PROCESSOR_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
            is not None
        )
    except EntryNotFoundError:
        has_processor = False
    if has_processor:
        processor = AutoSamImageProcessor.from_pretrained(name_or_path, **hub_kwargs)
    else:
        logger.warning(
            "%s has no %s; using the processor its config describes (AutoSamImageProcessor.from_model_config).",
            name_or_path,
            IMAGE_PROCESSOR_NAME,
        )
        processor = AutoSamImageProcessor.from_model_config(model.config)
    processor.mask_threshold = model.config.mask_threshold
    processor.num_labels = model.config.num_labels
    return processor


def load_model_and_processor(
    name_or_path: str | os.PathLike, revision: str | None = None, **from_pretrained_kwargs
) -> tuple[AutoSamForSegmentation, AutoSamImageProcessor]:
    """An AutoSAM checkpoint (full or adapter-size; a folder or a Hub id) and its processor, model in eval mode.

    Raises:
        ValueError: nothing loadable at `name_or_path` (the message names it).
    """
    hub_kwargs = {"revision": revision} if revision else {}
    for key in ("cache_dir", "token", "local_files_only"):
        if key in from_pretrained_kwargs:
            hub_kwargs[key] = from_pretrained_kwargs[key]
    try:
        model = AutoSamForSegmentation.from_pretrained(
            name_or_path, revision=revision or "main", **from_pretrained_kwargs
        )
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not load an AutoSAM model from {str(name_or_path)!r}: {error}") from error
    use_fast_memory_format(model.eval())
    return model, load_processor(name_or_path, model, **hub_kwargs)


__all__ = ["load_model_and_processor", "load_processor"]
