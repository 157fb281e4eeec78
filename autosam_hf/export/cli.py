"""`autosam-export`: a trained AutoSAM as ONNX graphs for onnxruntime (or any ONNX runtime).

    autosam-export --model runs/kvasir --output_dir runs/kvasir/onnx [--opset 20] [--graphs encoder,prompt_decoder]

Writes image_encoder.onnx, prompt_decoder.onnx, surrogate.onnx (when the model has h), preprocessor_config.json and
autosam_onnx.json (inputs, outputs, pre- and post-processing) to `--output_dir`; see `autosam_hf.export.onnx_export`.
`autosam-predict --backend onnxruntime --model <that folder>` runs them.

Exit status: 0 when every graph was written; 2 for bad input (arguments, a model that cannot be loaded, an existing
non-empty output folder, onnx not installed); 1 when a graph could not be exported (neither exporter gave a graph
that passes the checks); both printed as `autosam-export: error: <message>`, and nothing is written.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..cli import ArgumentParser, add_model_arguments, add_output_dir_argument, configure_logging
from ..hub.loading import load_model_and_processor
from .exporters import EXPORTERS, ExportError
from .graphs import GRAPH_NAMES, check_graph_names
from .onnx_export import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    check_opset,
    check_output_dir,
    export_onnx,
    require_export_dependencies,
)


def graph_list(text: str) -> tuple[str, ...]:
    """argparse `type` of `--graphs`: comma-separated graph names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in GRAPH_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(GRAPH_NAMES)}; got {text!r}")
    return names


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-export",
        failures=(ExportError,),
        description="Export a trained AutoSAM to ONNX (SAM's image encoder, g + SAM's mask decoder, h(g(I))), each "
        "graph with a dynamic batch, plus autosam_onnx.json describing inputs, outputs and pre/post-processing.",
    )
    add_model_arguments(parser)
    add_output_dir_argument(parser, required=True, help="folder to write the graphs and autosam_onnx.json to")
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})",
    )
    parser.add_argument(
        "--graphs",
        type=graph_list,
        help=f"comma-separated graphs to export, of {','.join(GRAPH_NAMES)} (default: all the model has; only "
        "surrogate for a SAM-free --stage standalone model)",
    )
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="auto",
        help="auto: torch.onnx's dynamo exporter, falling back to the TorchScript one per graph (default)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output_dir")
    return parser


def export(args: argparse.Namespace) -> int:
    """Run `autosam-export` with parsed arguments; bad input raises ValueError / OSError naming it."""
    check_opset(args.opset)
    check_output_dir(args.output_dir, args.overwrite)  # these before the (slow) model loading
    require_export_dependencies(args.exporter)
    configure_logging()
    model, processor = load_model_and_processor(args.model, revision=args.revision)
    try:
        graphs = check_graph_names(args.graphs, model) if args.graphs else None
    except ValueError as error:
        raise ValueError(f"--model {args.model}: {error}") from error
    manifest = export_onnx(
        model,
        processor,
        args.output_dir,
        opset=args.opset,
        graphs=graphs,
        exporter=args.exporter,
        overwrite=args.overwrite,
    )
    for name, graph in manifest["graphs"].items():
        print(f"{name}: {args.output_dir}/{graph['file']} ({graph['exporter']} exporter, opset {graph['opset']})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`autosam-export`); exit statuses in the module docstring."""
    return build_parser().run(export, argv)


if __name__ == "__main__":
    raise SystemExit(main())
