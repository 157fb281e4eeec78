"""ONNX export: PyTorch vs onnxruntime per image on this machine, side by side in one run, and their parity.

On the same Kvasir test images, batch 1, float32, the same number of threads for both backends:
  - `surrogate`: h(g(I)) (surrogate.onnx vs `model(..., mode="surrogate")`);
  - `autosam`: the full path, SAM's encoder + g + SAM's mask decoder (image_encoder.onnx then prompt_decoder.onnx
    vs `model(..., mode="autosam")`).
Each figure: two warm-up images, then the median over `--images` timed images (the backends taking turns image by
image, so both see the same machine load), through `autosam_hf.inference`'s
`iter_predictions` (processor, forward, post-processing to the original size), the path `autosam-predict` takes
with either backend. Parity: max |ONNX − PyTorch| of the logits (and SAM's image embeddings) on all the images,
`--parity_batch` at a time (a batch other than the export's example of 2 also exercises the graphs' dynamic batch);
and the share of mask pixels on which the two agree.

The model is a random-weight SAM (`common.sam_checkpoint`) with a fresh g (and h); speed does not depend on the
weights' values, but parity would mean nothing on SAM's initial weights (see `perturb_sam`). The export itself
(dynamo exporter, checks included) is timed per graph too. With `--model`, a trained folder is measured instead; with
`--onnx` too, its existing export (the export is then not timed: its manifest's times are from another run).

    python -m benchmarks.bench_onnx            # SAM ViT-B, g at 352 (several minutes: the export, then timings)
    python -m benchmarks.bench_onnx --quick    # small SAM, g at 64 (checks that the benchmark runs)
    python -m benchmarks.bench_onnx --model runs/kvasir --onnx runs/kvasir/onnx   # your model and its export
    python -m benchmarks.bench_onnx --table benchmarks/results/onnx/epyc_avx512_1thread.json   # only print the table
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.export import OnnxRuntimeAutoSam, export_onnx, read_manifest
from autosam_hf.hub import load_model_and_processor
from autosam_hf.inference import iter_predictions
from autosam_hf.runtime import describe_machine, use_fast_memory_format
from benchmarks.common import (
    default_result_name,
    kvasir_test_images,
    machine,
    sam_checkpoint,
    time_repeats,
    timing_summary,
    write_result,
)

MODES = ("surrogate", "autosam")
BACKENDS = ("pytorch", "onnxruntime")
WARMUP = 2  # untimed images per backend and mode
PROMPT_SIZE, QUICK_PROMPT_SIZE = 352, 64  # g's input size for polyps; --quick only checks that the benchmark runs
BACKBONE_NAMES = {"hardnet85": "HarDNet-85"}  # g's backbone as the tables name it


CPUINFO_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping")


def cpu_identity() -> dict[str, str | bool]:
    """The first CPU's identity from /proc/cpuinfo (a VM may report only "AMD EPYC" as its model name; the family
    and model numbers still say which generation it is) and whether it runs under a hypervisor."""
    identity: dict[str, str | bool] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = (part.strip() for part in line.partition(":"))
                if not key:  # the blank line after the first CPU
                    break
                if key in CPUINFO_FIELDS:
                    identity[key] = value
                elif key == "flags":
                    identity["hypervisor"] = "hypervisor" in value.split()
    except OSError:
        pass
    return identity


def perturb_sam(model: AutoSamForSegmentation, scale: float = 0.02, seed: int = 0) -> None:
    """Add seeded N(0, scale²) noise to every SAM weight. SAM's initial weights leave its encoder's neck convs at
    ~1e-10 (image embeddings ~1e-19) and its mask decoder nearly silent, so ONNX − PyTorch differences would be
    trivially tiny; with the noise the embeddings have unit scale (ViT-B) and the logits vary."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.sam.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def interleaved_seconds(models: dict, processor, images: list, mode: str, count: int) -> dict[str, dict]:
    """Seconds per image of `iter_predictions` at batch 1 for each backend in `models`, the backends taking turns
    image by image (a shared machine whose load drifts during the run then slows both alike): `WARMUP` images each
    (first-call allocations, kernel selection), then the median over `count` images."""
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for index in range(WARMUP + count):
        item = (index, images[index % len(images)])
        for name, model in models.items():
            (elapsed,) = time_repeats(
                lambda model=model, item=item: list(
                    iter_predictions(model, processor, [item], mode=mode, batch_size=1)
                ),
                repeats=1,
                warmup=0,
            )
            if index >= WARMUP:
                seconds[name].append(elapsed)
    return {name: timing_summary(values, images_per_repeat=1) for name, values in seconds.items()}


def parity(model, onnx_model, processor, images: list, batch: int, modes: tuple[str, ...] = MODES) -> dict:
    """max |ONNX − PyTorch| per mode over `images`, run `batch` images at a time (SAM ViT-B's eager attention needs
    several GB per image at 1024², on top of onnxruntime's arena), the share of mask pixels on which the two agree,
    and max |Δ| of SAM's image embeddings (from the full path's outputs, so the encoder runs once per backend)."""
    threshold = model.config.mask_threshold
    differences: dict[str, list[tuple[float, float, float]]] = {name: [] for name in (*modes, "image_embeddings")}
    with torch.no_grad():
        for start in range(0, len(images), batch):
            inputs = processor(images[start : start + batch])
            for mode in modes:
                expected, actual = model(**inputs, mode=mode), onnx_model(**inputs, mode=mode)
                agreement = float(((actual.logits > threshold) == (expected.logits > threshold)).float().mean())
                differences[mode].append(
                    (
                        float((actual.logits - expected.logits).abs().max()),
                        float(expected.logits.abs().max()),
                        agreement,
                    )
                )
                if mode == "autosam":
                    embeddings = expected.image_embeddings
                    difference = float((actual.image_embeddings - embeddings).abs().max())
                    differences["image_embeddings"].append((difference, float(embeddings.abs().max()), 1.0))
    result: dict = {
        mode: {
            "max_abs_diff_logits": max(entry[0] for entry in differences[mode]),
            "max_abs_logit": max(entry[1] for entry in differences[mode]),
            "mask_agreement": sum(entry[2] for entry in differences[mode]) / len(differences[mode]),
            "batch": batch,
            "images": len(images),
        }
        for mode in modes
    }
    embeddings = differences["image_embeddings"]  # only the full path runs SAM's encoder
    result["image_features"] = {}
    if embeddings:
        result["image_features"]["image_embeddings"] = {
            "max_abs_diff": max(entry[0] for entry in embeddings),
            "max_abs_value": max(entry[1] for entry in embeddings),
        }
    return result


def cpu_caption(details: dict) -> str:
    """What /proc/cpuinfo adds to the machine summary: family and model numbers, and whether it is a VM."""
    cpuinfo = details.get("cpuinfo") or {}
    if "cpu family" not in cpuinfo:
        return ""
    guest = ", virtual machine" if cpuinfo.get("hypervisor") else ""
    vendor = cpuinfo.get("vendor_id", "")
    return f" (/proc/cpuinfo: {vendor} family {cpuinfo['cpu family']} model {cpuinfo.get('model')}{guest})"


def render_table(result: dict) -> str:
    """Its table (docs/benchmarks/onnx.md): per mode, both backends' median (and fastest) seconds per image and
    onnxruntime's speed-up on each; on a shared machine the fastest image is the one least disturbed by other jobs."""
    note = f"; {result['note']}" if result.get("note") else ""
    lines = [
        f"**PyTorch vs onnxruntime per image** (SAM {result['sam']}, g = {result['g']}, batch 1, fp32, "
        f"median (fastest) of {result['images']} images after {WARMUP} warm-up ones, backends alternating; "
        f"{result['machine']}{cpu_caption(result.get('machine_details', {}))}; onnxruntime {result['onnxruntime']} "
        f"with {result['threads']} threads{note})",
        "",
        "| mode | PyTorch s/image | onnxruntime s/image | speed-up | max abs Δ logits "
        f"({next(iter(result['parity'].values())).get('images', result['images'])} images) | max abs logit |",
        "|---|---|---|---|---|---|",
    ]
    for mode in result["modes"]:
        entry = result["modes"][mode]
        fastest = {backend: min(entry[backend]["seconds"]) for backend in BACKENDS}
        median = {backend: entry[backend]["seconds_per_image"] for backend in BACKENDS}
        lines.append(
            f"| {mode} | {median['pytorch']:.3g} ({fastest['pytorch']:.3g}) | "
            f"{median['onnxruntime']:.3g} ({fastest['onnxruntime']:.3g}) | "
            f"{entry['speedup_onnxruntime_vs_pytorch']:.2f}× ({fastest['pytorch'] / fastest['onnxruntime']:.2f}×) | "
            f"{result['parity'][mode]['max_abs_diff_logits']:.1e} | {result['parity'][mode]['max_abs_logit']:.2g} |"
        )
    if result.get("export") is None:
        export = f"not timed in this run ({result['onnx_dir']})"
    else:
        export = ", ".join(
            f"{name} {graph['exporter']} {graph['export_seconds']:.0f} s" for name, graph in result["export"].items()
        )
    features = ", ".join(
        f"{name} {value['max_abs_diff']:.1e} (values up to {value['max_abs_value']:.2g})"
        for name, value in result["parity"]["image_features"].items()
    )
    encoder = f" Max abs Δ of SAM's encoder: {features}." if features else ""
    lines += ["", f"Export (opset {result['opset']}): {export}.{encoder}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small SAM, g at 64")
    parser.add_argument("--images", type=int, default=3, help="timed images per mode and backend (default 3)")
    parser.add_argument("--threads", type=int, help="threads of both backends (default: torch's, OMP_NUM_THREADS)")
    parser.add_argument("--note", help="said in the table's caption, e.g. that the CPU was shared with other jobs")
    parser.add_argument("--table", metavar="RESULT_JSON", help="only print the table of a result file")
    parser.add_argument("--model", help="a trained AutoSAM folder to measure instead of a random-weight SAM")
    parser.add_argument("--onnx", help="the --model's existing export (autosam-export) instead of exporting it here")
    parser.add_argument("--name", help="result EXPERIMENT/RUN (default onnx/latest; onnx/quick, onnx/model)")
    parser.add_argument(
        "--parity_batch",
        type=int,
        default=3,
        help="images per forward of the parity check (default 3; SAM ViT-B needs several GB per image)",
    )
    args = parser.parse_args(argv)
    if args.table:
        print(render_table(json.loads(Path(args.table).read_text())))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.onnx and not args.model:
        parser.error("--onnx needs the --model it was exported from (PyTorch is timed and checked against it)")
    count = args.images
    print(f"Machine: {machine()}; /proc/cpuinfo: {cpu_identity()}", flush=True)  # every figure below is this CPU's
    if args.model:
        model, processor = load_model_and_processor(args.model)
        size = model.config.sam_name_or_path or args.model
    else:
        size = "small" if args.quick else "vit_b"
        torch.manual_seed(0)
        prompt_size = QUICK_PROMPT_SIZE if args.quick else PROMPT_SIZE
        model = AutoSamForSegmentation.from_sam(str(sam_checkpoint(size)), prompt_input_size=prompt_size)
        use_fast_memory_format(model.eval())
        perturb_sam(model)
        processor = AutoSamImageProcessor.from_model_config(model.config)
    images = kvasir_test_images(WARMUP + count)
    with tempfile.TemporaryDirectory(prefix="autosam-bench-onnx-") as temporary:
        folder = Path(args.onnx) if args.onnx else Path(temporary) / "onnx"
        manifest = read_manifest(folder) if args.onnx else export_onnx(model, processor, folder)
        onnx_model = OnnxRuntimeAutoSam(folder, num_threads=torch.get_num_threads())
        import onnxruntime  # present: OnnxRuntimeAutoSam needs it

        measured_modes = tuple(mode for mode in MODES if mode in manifest["modes"])  # a model without h: autosam
        modes = {}
        for mode in measured_modes:
            timings = interleaved_seconds(
                dict(zip(BACKENDS, (model, onnx_model), strict=True)), processor, images, mode, count
            )
            speedup = timings["pytorch"]["seconds_per_image"] / timings["onnxruntime"]["seconds_per_image"]
            modes[mode] = {**timings, "speedup_onnxruntime_vs_pytorch": speedup}
            print(json.dumps({mode: modes[mode]}), flush=True)
        backbone_name = BACKBONE_NAMES.get(model.config.backbone, model.config.backbone)
        result = {
            "machine": machine(),
            "machine_details": {**describe_machine(), "cpuinfo": cpu_identity()},
            "note": args.note,
            "threads": torch.get_num_threads(),
            "onnxruntime": onnxruntime.__version__,  # this run's (a given export's manifest names its own)
            "sam": size,
            "g": f"{backbone_name} at {model.config.prompt_input_size}",
            "images": count,
            "batch_size": 1,
            "opset": manifest["opset"],
            "onnx_dir": args.onnx,
            "export": None
            if args.onnx
            else {
                name: {key: graph[key] for key in ("exporter", "opset", "export_seconds", "verification")}
                for name, graph in manifest["graphs"].items()
            },
            "modes": modes,
            "parity": None,
        }
        name = args.name or ("onnx/model" if args.model else default_result_name("onnx", args.quick))
        write_result(name, result)  # the timings are kept even if the parity check runs out of memory
        result["parity"] = parity(model, onnx_model, processor, images, args.parity_batch, measured_modes)
    path = write_result(name, result)
    print(render_table(result))
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
