"""A trained AutoSAM as a Hub-ready folder (weights, config, processor config, remote code, model card with the
measured metrics), then `HfApi.create_repo` + `upload_folder`; the command line is `autosam_hf.hub.cli`
(`autosam-publish`).

    publish("runs/kvasir", "kvasir", "my-org/autosam-kvasir", adapter=True, dry_run=True)

The folder is written to a temporary sibling and renamed into place when complete, so an interrupted run leaves
nothing half-written. `dry_run` stops after writing it. The metrics in the card are read from the trained folder's
`all_results.json` and from `metrics_files` (schema: `autosam_hf.hub.model_card`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..atomic_write import write_folder_atomically
from ..data.presets import DatasetPreset, folder_preset, get_preset, resolve_preset
from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from .loading import load_model_and_processor
from .model_card import METRICS_FILENAME, build_model_card, is_hub_repo_id, read_measured_metrics

logger = logging.getLogger(__name__)

CARD_FILENAME = "README.md"


@dataclass(frozen=True)
class PublishSettings:
    """How a trained folder is published; every field is optional.

    The folder:
        output_dir: where it is written (default `<model_dir>/hub/<org>--<name>`, `default_output_dir`).
        adapter: g and h only; loading fetches the base SAM from the config's `sam_name_or_path`/`sam_revision`.
        metrics_files: more JSON files of measured metrics (read after `<model_dir>/all_results.json`).
        base_sam, base_sam_revision: the base SAM's Hub id and revision, recorded instead of the config's.
        license: the card's `license` metadata.
        template_dir: a folder with another card `template.md` (default: the one installed with the package).
        overwrite: replace an existing non-empty `output_dir`.

    The upload:
        dry_run: write the folder only.
        private: create the repository private (when it does not exist yet).
        revision: branch to upload to (created if missing); default the main branch.
        commit_message: of the upload commit.
        token: Hub token (default: the logged-in one / `HF_TOKEN`).
    """

    output_dir: str | os.PathLike | None = None
    adapter: bool = False
    metrics_files: Sequence[str | os.PathLike] = ()
    base_sam: str | None = None
    base_sam_revision: str | None = None
    license: str = "apache-2.0"
    template_dir: str | os.PathLike | None = None
    overwrite: bool = False
    dry_run: bool = False
    private: bool = False
    revision: str | None = None
    commit_message: str | None = None
    token: str | None = None


def default_output_dir(model_dir: str | os.PathLike, repo_id: str) -> Path:
    """Where the Hub folder goes without `--output_dir`: `<model_dir>/hub/<org>--<name>`."""
    return Path(model_dir) / "hub" / repo_id.replace("/", "--")


SETTINGS_FILENAME = "training_settings.json"  # what autosam-train resolved, the dataset's card facts included


def trained_dataset(
    model_dir: str | os.PathLike,
    preset: str | None = None,
    display_name: str | None = None,
    license: str | None = None,
    citation: str | None = None,
) -> DatasetPreset:
    """The dataset a card describes: `preset`; else what the run recorded in `<model_dir>/training_settings.json`
    (its preset, or its folder with the display name, licence and citation it was given, each overridden by the
    argument given here); else a folder named `display_name`.

    Raises:
        ValueError: card facts given for a named preset, or nothing that says what the model was trained on.
    """
    facts = {"display_name": display_name, "license": license, "citation": citation}
    given = [name for name, value in facts.items() if value is not None]
    flags = ", ".join(f"--dataset_{name}" for name in given)
    if preset is not None:
        if given:
            raise ValueError(f"{flags}: only without --preset (preset {preset!r} has its own card)")
        return get_preset(preset)
    path = Path(model_dir) / SETTINGS_FILENAME
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    if recorded.get("preset"):
        if given:
            raise ValueError(
                f"{flags}: {model_dir} was trained on preset {recorded['preset']!r}, which has its own card"
            )
        return get_preset(recorded["preset"])
    data = recorded.get("data") or recorded.get("dataset_name") or display_name
    if data is None:
        raise ValueError(
            f"{model_dir} does not record what it was trained on (no {SETTINGS_FILENAME} from autosam-train): give "
            "--preset, or --dataset_display_name for data of your own"
        )
    return folder_preset(
        data,
        display_name=display_name or recorded.get("dataset_display_name"),
        license=license or recorded.get("dataset_license"),
        citation=citation or recorded.get("dataset_citation"),
        hub_id=None if recorded.get("data") else recorded.get("dataset_name"),
    )


def _check_inputs(model_dir: Path, repo_id: str, output_dir: Path, overwrite: bool) -> None:
    """Fail on bad arguments before anything is loaded."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid --hub_model_id {repo_id!r}: {error}") from error
    if not model_dir.is_dir():
        raise ValueError(f"Trained model folder not found: {model_dir}")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"Output folder {output_dir} exists and is not empty (pass --overwrite to replace it).")


def _metrics_paths(model_dir: Path, metrics_files: Sequence[str | os.PathLike]) -> list[Path]:
    """The trained folder's `all_results.json` (if any), then the extra files."""
    own = [model_dir / METRICS_FILENAME] if (model_dir / METRICS_FILENAME).is_file() else []
    return own + [Path(path) for path in metrics_files]


def _load_model(model_dir: Path, settings: PublishSettings) -> tuple[AutoSamForSegmentation, AutoSamImageProcessor]:
    """The trained model and processor, with the base SAM recorded as `settings` say (checked for adapters)."""
    model, processor = load_model_and_processor(model_dir)
    if settings.base_sam is not None:
        model.config.sam_name_or_path, model.config.sam_revision = settings.base_sam, settings.base_sam_revision
    if settings.adapter and not is_hub_repo_id(model.config.sam_name_or_path):
        raise ValueError(
            f"An adapter checkpoint must name its base SAM by Hub id, but the model's config has "
            f"sam_name_or_path={model.config.sam_name_or_path!r}. Pass --base_sam (base_sam), e.g. "
            "'facebook/sam-vit-base', with the weights the model was trained on."
        )
    return model, processor


def write_hub_folder(
    model_dir: str | os.PathLike,
    preset: str | DatasetPreset,
    repo_id: str,
    output_dir: str | os.PathLike,
    settings: PublishSettings | None = None,
) -> Path:
    """Write the folder that `publish` uploads; returns `output_dir` (`settings.output_dir` is not read here).

    Contents: `model.safetensors` (full, or g and h only with `settings.adapter`), `config.json` (with `auto_map`),
    `preprocessor_config.json` (with the model's `mask_threshold`), the model's source files (remote code),
    `README.md` (the card) and the metrics files it was filled from.

    Raises:
        ValueError: unknown preset, invalid repo id, unreadable model or metrics, an adapter checkpoint whose base
            SAM is not a Hub id, or an existing non-empty `output_dir` without `settings.overwrite`.
    """
    settings = settings or PublishSettings()
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    preset = resolve_preset(preset)  # unknown preset: ValueError listing the known ones
    _check_inputs(model_dir, repo_id, output_dir, settings.overwrite)
    metrics_paths = _metrics_paths(model_dir, settings.metrics_files)
    metrics, training_arguments, sources = read_measured_metrics(metrics_paths)
    if not metrics:
        logger.warning("No measured metrics found (%s, --metrics): the card says 'not measured'.", METRICS_FILENAME)
    model, processor = _load_model(model_dir, settings)
    card = build_model_card(
        preset,
        repo_id,
        model.config,
        metrics=metrics,
        training_arguments=training_arguments,
        metrics_sources=sources,
        adapter=settings.adapter,
        license=settings.license,
        template_dir=settings.template_dir,
    )

    def write(staging: Path) -> None:
        (model.save_adapter if settings.adapter else model.save_pretrained)(staging)
        processor.save_pretrained(staging)
        card.save(staging / CARD_FILENAME)
        for path in metrics_paths:
            # The card cites each file by name: two of one name, or one named like a file of the model, would
            # leave the folder without what the card cites.
            if (staging / path.name).exists():
                raise ValueError(
                    f"metrics file {path}: the folder already holds a {path.name} (another --metrics file, or a "
                    "file of the model); rename it"
                )
            shutil.copyfile(path, staging / path.name)

    write_folder_atomically(output_dir, write)
    return output_dir


def upload_hub_folder(folder: str | os.PathLike, repo_id: str, settings: PublishSettings, commit_message: str) -> None:
    """Create `repo_id` (and the `settings.revision` branch) if missing and upload `folder` to it."""
    api = HfApi(token=settings.token)
    api.create_repo(repo_id, repo_type="model", private=settings.private, exist_ok=True)
    if settings.revision:
        api.create_branch(repo_id, branch=settings.revision, repo_type="model", exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        revision=settings.revision,
        commit_message=settings.commit_message or commit_message,
    )


def publish(
    model_dir: str | os.PathLike,
    preset: str | DatasetPreset | None = None,
    repo_id: str | None = None,
    settings: PublishSettings | None = None,
    **options: Any,
) -> Path:
    """Write the Hub folder of a trained model (`write_hub_folder`) and, unless `settings.dry_run`, upload it.

    Args:
        model_dir: the trained folder (`save_pretrained` output of the model and processor; `all_results.json`).
        preset: the dataset preset the model was trained for (`autosam_hf.data.PRESETS`), or a preset such as a
            folder's (`trained_dataset`, `folder_preset`): the card's facts.
        repo_id: `org/name` on the Hub.
        settings: the folder and upload options (`PublishSettings`).
        options: `PublishSettings` fields overriding `settings`, e.g. `publish(folder, "kvasir", "org/name",
            dry_run=True)`.

    Returns:
        The written folder.
    """
    if preset is None or repo_id is None:
        raise TypeError("publish() needs a preset and a repo_id")
    settings = dataclasses.replace(settings or PublishSettings(), **options)
    output_dir = settings.output_dir or default_output_dir(model_dir, repo_id)
    folder = write_hub_folder(model_dir, preset, repo_id, output_dir, settings)
    if settings.dry_run:
        logger.info("Dry run: wrote %s; nothing uploaded.", folder)
        return folder
    kind = "adapter" if settings.adapter else "full"
    upload_hub_folder(
        folder, repo_id, settings, commit_message=f"Upload AutoSAM ({resolve_preset(preset).name}, {kind})"
    )
    logger.info("Uploaded %s to https://huggingface.co/%s", folder, repo_id)
    return folder


__all__ = [
    "PublishSettings",
    "default_output_dir",
    "publish",
    "trained_dataset",
    "upload_hub_folder",
    "write_hub_folder",
]
