"""`autosam-demo`: a browser demo of a trained AutoSAM (Gradio, `pip install 'autosam-hf[demo]'`).

    autosam-demo --model runs/kvasir            # http://127.0.0.1:7860, this machine only
    autosam-demo --model runs/kvasir --share    # also a public gradio.live link: anyone with it can use the model

Upload an image (or a NIfTI volume / the files of a DICOM series, with a slice slider), see the automatic mask,
click to correct it (positive / negative points, a box), switch between autosam and the surrogate h(g(I)), and
download the mask PNG (what `autosam-predict` writes for the same clicks) or the label volume. The model is loaded
as `autosam-predict` loads it (`--device`, `--dtype`); every prediction goes through
`autosam_hf.inference.predictor`. Exit status 2 for bad input (`autosam-demo: error: <message>`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence

from ..cli import (
    ArgumentParser,
    add_model_arguments,
    add_runtime_arguments,
    configure_logging,
    int_in_range,
    resolve_runtime,
)
from ..hub.loading import load_model_and_processor
from .app import build_app, import_gradio
from .session import Demo

LOCALHOST = "127.0.0.1"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-demo",
        description="A browser demo of an AutoSAM model: upload an image or volume, see the automatic mask, correct "
        "it with clicks or a box, download the mask. Serves on 127.0.0.1 (this machine) unless --share.",
    )
    add_model_arguments(parser)
    add_runtime_arguments(parser)
    parser.add_argument(
        "--port", type=int_in_range(1, 65535), default=7860, help="local port to serve on (default 7860)"
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio.live link (through Gradio's servers): anyone with the link can upload "
        "images to this machine and run the model; off by default",
    )
    return parser


def load_demo(args: argparse.Namespace, root: str | os.PathLike | None = None) -> Demo:
    """The `Demo` of `--model` on `--device` / `--dtype`, loaded as `autosam-predict` loads a PyTorch model; the
    sessions' download files go under `root` (default: the system's temporary folder)."""
    device, autocast_dtype = resolve_runtime(args)
    model, processor = load_model_and_processor(args.model, revision=args.revision)
    return Demo(model.to(device), processor, autocast_dtype, root=root)


def serve(args: argparse.Namespace) -> int:
    configure_logging()
    import_gradio()  # a missing extra is named before the model is loaded
    with tempfile.TemporaryDirectory(prefix="autosam-demo-") as root:  # the downloads go when the server stops
        app = build_app(load_demo(args, root), title=f"AutoSAM: {args.model}")
        app.launch(server_name=LOCALHOST, server_port=args.port, share=args.share)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`autosam-demo`)."""
    return build_parser().run(serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
