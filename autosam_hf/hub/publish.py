"""Publish a trained AutoSAM: a Hub-ready folder (weights, config, processor config, remote code, model card with
the measured metrics), then `HfApi.create_repo` + `upload_folder`.

    autosam-publish outputs/kvasir --dataset kvasir --repo-id my-org/autosam-kvasir [--adapter] [--dry-run]

The folder is written to a temporary sibling and renamed into place when complete, so an interrupted run leaves
nothing half-written. `--dry-run` stops after writing it. The metrics in the card are read from the trained
folder's `all_results.json` and from `--metrics` files (schema: `autosam_hf.hub.model_card`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .loading import load_model_and_processor
from .model_card import METRICS_FILENAME, build_model_card, is_hub_repo_id, load_card_facts, read_measured_metrics

logger = logging.getLogger(__name__)

CARD_FILENAME = "README.md"


def default_output_dir(model_dir: str | os.PathLike, repo_id: str) -> Path:
    """Where the Hub folder goes without `--output-dir`: `<model_dir>/hub/<org>--<name>`."""
    return Path(model_dir) / "hub" / repo_id.replace("/", "--")


def write_hub_folder(
    model_dir: str | os.PathLike,
    dataset: str,
    repo_id: str,
    output_dir: str | os.PathLike,
    adapter: bool = False,
    metrics_files: Iterable[str | os.PathLike] = (),
    base_sam: str | None = None,
    base_sam_revision: str | None = None,
    license: str = "apache-2.0",
    template_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the folder that `publish` uploads; returns `output_dir`.

    Contents: `model.safetensors` (full, or g and h only with `adapter=True`), `config.json` (with `auto_map`),
    `preprocessor_config.json`, the model's source files (remote code), `README.md` (the card) and the metrics
    files it was filled from.

    Raises:
        ValueError: unknown dataset card, invalid repo id, unreadable model or metrics, an adapter checkpoint whose
            base SAM is not a Hub id, or an existing non-empty `output_dir` without `overwrite`.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid --repo-id {repo_id!r}: {error}") from error
    load_card_facts(dataset, template_dir)  # fail on an unknown dataset before loading anything
    if not model_dir.is_dir():
        raise ValueError(f"Trained model folder not found: {model_dir}")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"Output folder {output_dir} exists and is not empty (pass overwrite=True / --overwrite).")

    metrics_paths = [model_dir / METRICS_FILENAME] if (model_dir / METRICS_FILENAME).is_file() else []
    metrics_paths += [Path(path) for path in metrics_files]
    metrics, training_arguments, sources = read_measured_metrics(metrics_paths)
    if not metrics:
        logger.warning("No measured metrics found (%s, --metrics): the card says 'not measured'.", METRICS_FILENAME)

    model, processor = load_model_and_processor(model_dir)
    if base_sam is not None:
        model.config.sam_name_or_path, model.config.sam_revision = base_sam, base_sam_revision
    if adapter and not is_hub_repo_id(model.config.sam_name_or_path):
        raise ValueError(
            f"An adapter checkpoint must name its base SAM by Hub id, but the model's config has "
            f"sam_name_or_path={model.config.sam_name_or_path!r}. Pass base_sam (--base-sam), e.g. "
            "'facebook/sam-vit-base', with the weights the model was trained on."
        )

    card = build_model_card(
        dataset,
        repo_id,
        model.config,
        metrics=metrics,
        training_arguments=training_arguments,
        metrics_sources=sources,
        adapter=adapter,
        license=license,
        template_dir=template_dir,
    )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; the result is an ordinary folder
        if adapter:
            model.save_adapter(staging)
        else:
            model.save_pretrained(staging)
        processor.save_pretrained(staging)
        card.save(staging / CARD_FILENAME)
        for path in metrics_paths:
            shutil.copyfile(path, staging / path.name)
        _replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder `new` to `target`, replacing what was there (an empty folder or, when the caller
    allowed it, an old export) only once `new` is in place."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def publish(
    model_dir: str | os.PathLike,
    dataset: str,
    repo_id: str,
    adapter: bool = False,
    dry_run: bool = False,
    output_dir: str | os.PathLike | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    metrics_files: Iterable[str | os.PathLike] = (),
    base_sam: str | None = None,
    base_sam_revision: str | None = None,
    license: str = "apache-2.0",
    token: str | None = None,
    template_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the Hub folder of a trained model (`write_hub_folder`) and, unless `dry_run`, upload it to `repo_id`.

    Args:
        model_dir: the trained folder (`save_pretrained` output of the model and processor; `all_results.json`).
        dataset: the card to use (`kvasir`, `clinicdb`, `colondb`, `etis`, `cvc300`, `glas`, `monuseg`, `sunseg`).
        repo_id: `org/name` on the Hub.
        adapter: publish g and h only; loading fetches SAM from the config's `sam_name_or_path`/`sam_revision`.
        dry_run: write the folder only.
        output_dir: where the folder goes (default `<model_dir>/hub/<org>--<name>`).
        private: create the repository private (when it does not exist yet).
        revision: branch to upload to (created if missing); default the main branch.
        commit_message: of the upload commit.
        metrics_files: more JSON files of measured metrics (read after `model_dir/all_results.json`).
        base_sam, base_sam_revision: the base SAM's Hub id and revision, overriding the config's.
        license: the card's `license` metadata.
        token: Hub token (default: the logged-in one / `HF_TOKEN`).
        template_dir: model card templates (default: the repository's `model_cards/`).
        overwrite: replace an existing non-empty `output_dir`.

    Returns:
        The written folder.
    """
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(model_dir, repo_id)
    folder = write_hub_folder(
        model_dir,
        dataset,
        repo_id,
        output_dir,
        adapter=adapter,
        metrics_files=metrics_files,
        base_sam=base_sam,
        base_sam_revision=base_sam_revision,
        license=license,
        template_dir=template_dir,
        overwrite=overwrite,
    )
    if dry_run:
        logger.info("Dry run: wrote %s; nothing uploaded.", folder)
        return folder
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        revision=revision,
        commit_message=commit_message or f"Upload AutoSAM ({dataset}, {'adapter' if adapter else 'full'})",
    )
    logger.info("Uploaded %s to https://huggingface.co/%s", folder, repo_id)
    return folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosam-publish",
        description="Write a trained AutoSAM as a Hub repository folder (weights, config, processor, remote code, "
        "model card with the measured metrics) and upload it.",
    )
    parser.add_argument("model_dir", help="trained folder (save_pretrained output; all_results.json is read)")
    parser.add_argument(
        "--dataset", required=True, help="card to use: kvasir, clinicdb, colondb, etis, cvc300, glas, monuseg or sunseg"
    )
    parser.add_argument("--repo-id", required=True, help="Hub repository, org/name")
    parser.add_argument(
        "--adapter", action="store_true", help="publish g and h only (tens of MB); loading fetches the base SAM"
    )
    parser.add_argument("--base-sam", help="base SAM Hub id recorded for --adapter (default: the config's)")
    parser.add_argument("--base-sam-revision", help="base SAM revision recorded with --base-sam")
    parser.add_argument("--dry-run", action="store_true", help="write the folder only, upload nothing")
    parser.add_argument("--output-dir", help="where to write the folder (default MODEL_DIR/hub/ORG--NAME)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output-dir")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="JSON",
        help="more measured-metrics files (schema: autosam_hf.hub.model_card)",
    )
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to upload to (created if missing)")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--license", default="apache-2.0", help="license metadata of the card (default apache-2.0)")
    parser.add_argument("--template-dir", help="model card templates (default: the repository's model_cards/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns 0 on success, 1 on an error (printed, naming its cause)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        folder = publish(
            args.model_dir,
            args.dataset,
            args.repo_id,
            adapter=args.adapter,
            dry_run=args.dry_run,
            output_dir=args.output_dir,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            metrics_files=args.metrics,
            base_sam=args.base_sam,
            base_sam_revision=args.base_sam_revision,
            license=args.license,
            template_dir=args.template_dir,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError, HfHubHTTPError) as error:  # OSError: file and connection errors
        print(f"autosam-publish: error: {error}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
