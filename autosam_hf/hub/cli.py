"""`autosam-publish`: a trained AutoSAM as a Hub-ready folder (weights, config, processor config, remote code, model
card with the measured metrics), then uploaded to the Hub (`autosam_hf.hub.publish`).

    autosam-publish --model runs/kvasir --preset kvasir --hub_model_id my-org/autosam-kvasir [--adapter] [--dry_run]
    autosam-publish --model runs/mydata --hub_model_id my-org/autosam-mydata --dataset_license CC-BY-4.0

Without `--preset`, the card's dataset is what the run's `training_settings.json` records: its preset, or its folder
of one's own (name, licence, citation; `--dataset_*` override them), whose card names that folder and nothing else.

The folder is written whole (`autosam_hf.hub.publish`); `--dry_run` stops after writing it. The metrics in the card
are read from the trained folder's `all_results.json` and from `--metrics` files (schema: `autosam_hf.hub.model_card`).

Exit status: 0 on success (the folder is printed); 2 for bad input (arguments, the trained folder, metrics files,
an existing output folder), printed as `autosam-publish: error: <message>`; 1 when the upload failed (the Hub
refused it or could not be reached), printed the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from huggingface_hub.errors import HTTPError

from ..cli import ArgumentParser, add_model_arguments, add_output_dir_argument, configure_logging
from ..data import PRESETS
from .publish import PublishSettings, publish, trained_dataset


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-publish",
        description="Write a trained AutoSAM as a Hub repository folder (weights, config, processor, remote code, "
        "model card with the measured metrics) and upload it.",
        failures=(HTTPError,),
    )
    add_model_arguments(
        parser, help="trained folder (save_pretrained output; all_results.json is read)", revision=False
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="the dataset preset it was trained for (the card's facts); default: what MODEL's training_settings.json "
        "records, a preset or a folder of one's own",
    )
    parser.add_argument(
        "--dataset_display_name",
        help="without a preset: the data's name on the card (default: the recorded one, else the training folder's "
        "name)",
    )
    parser.add_argument(
        "--dataset_license", help="without a preset: the data's licence or terms (default: recorded, else not stated)"
    )
    parser.add_argument("--dataset_citation", help="without a preset: the data's BibTeX (default: recorded, else none)")
    parser.add_argument("--hub_model_id", "--repo_id", required=True, help="Hub repository, org/name")
    parser.add_argument(
        "--adapter", action="store_true", help="publish g and h only (tens of MB); loading fetches the base SAM"
    )
    parser.add_argument("--base_sam", help="base SAM Hub id recorded for --adapter (default: the config's)")
    parser.add_argument("--base_sam_revision", help="base SAM revision recorded with --base_sam")
    parser.add_argument("--dry_run", action="store_true", help="write the folder only, upload nothing")
    add_output_dir_argument(parser, help="where to write the folder (default MODEL/hub/ORG--NAME)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output_dir")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="JSON",
        help="more measured-metrics files, e.g. autosam-eval's eval_results.json (schema: autosam_hf.hub.model_card)",
    )
    parser.add_argument("--hub_private", "--private", action="store_true", help="create the repository private")
    parser.add_argument("--hub_revision", help="branch to upload to (created if missing)")
    parser.add_argument("--commit_message", help="message of the upload commit")
    parser.add_argument("--license", default="apache-2.0", help="license metadata of the card (default apache-2.0)")
    parser.add_argument("--template_dir", help="folder with another card template.md (default: the installed one)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `autosam-publish` with parsed arguments; prints the written folder."""
    configure_logging()
    settings = PublishSettings(
        output_dir=args.output_dir,
        adapter=args.adapter,
        metrics_files=args.metrics,
        base_sam=args.base_sam,
        base_sam_revision=args.base_sam_revision,
        license=args.license,
        template_dir=args.template_dir,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        private=args.hub_private,
        revision=args.hub_revision,
        commit_message=args.commit_message,
    )
    dataset = trained_dataset(
        args.model, args.preset, args.dataset_display_name, args.dataset_license, args.dataset_citation
    )
    print(publish(args.model, dataset, args.hub_model_id, settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`autosam-publish`); exit statuses in the module docstring."""
    return build_parser().run(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
