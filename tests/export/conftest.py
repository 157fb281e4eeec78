"""The export tests' shared export: the tiny AutoSAM exported once (all three graphs) for every module here, and a
few real Kvasir-SEG test images.

The tests need onnx, onnxscript and onnxruntime (the `onnx` extra, in `dev` too); without them they are skipped,
saying so, unless AUTOSAM_REQUIRE_ONNX=1 (CI), which makes the absence a failure.
"""

import json
import os
import shutil

import PIL.Image
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor, skip_unless_required
from filelock import FileLock, Timeout

from autosam_hf.export.dependencies import missing_onnx_packages


def require_onnx_packages() -> None:
    """Skip (or, with AUTOSAM_REQUIRE_ONNX=1, fail) when a package of the onnx extra is missing."""
    missing = missing_onnx_packages()
    if missing:
        message = f"{', '.join(missing)} not installed: pip install 'autosam-hf[onnx]' to run the ONNX export tests"
        skip_unless_required(message, "AUTOSAM_REQUIRE_ONNX")


@pytest.fixture(autouse=True)
def _onnx_packages():
    require_onnx_packages()


# The graphs, the slowest to trace first (tiny model: ~21, ~14 and ~7 s); one worker takes them in this order, the
# other in the reverse, so the two workers trace side by side and finish together.
GRAPHS_SLOWEST_FIRST = ("prompt_decoder", "surrogate", "encoder")


@pytest.fixture(scope="package")
def exported(tmp_path_factory):
    """(tiny model in eval mode, its processor, export folder, manifest): every graph, default settings.

    Exported once per test session, not once per pytest-xdist worker, and graph by graph: each worker exports the
    graphs no other worker has taken (a file lock per graph in the session's folder), waits for the rest, and the
    first to get there puts them into one folder as `export_onnx` writes it (the same files, and the manifest from
    the same `build_manifest`). One worker no longer traces all three while the other waits. The model is seeded,
    so every worker's copy is the exported one. Tests only read the folder.
    """
    require_onnx_packages()
    from autosam_hf.atomic_write import write_folder_atomically
    from autosam_hf.export import DEFAULT_OPSET, GRAPH_NAMES, MANIFEST_NAME, export_onnx
    from autosam_hf.export.manifest import build_manifest, write_manifest
    from autosam_hf.export.onnx_export import export_processor

    model = make_tiny_model().eval()
    processor = make_tiny_processor()
    # Under xdist each worker's base folder lies in the session's; without xdist the base folder is the session's.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    folder, parts = shared / "onnx_export", shared / "onnx_graphs"
    parts.mkdir(exist_ok=True)

    def export_part(name: str) -> None:  # under its lock; a manifest is written last, so present means complete
        if not (parts / name / MANIFEST_NAME).exists():
            export_onnx(model, processor, parts / name, graphs=[name])

    odd_worker = worker is not None and int(worker.removeprefix("gw")) % 2 == 1
    for name in reversed(GRAPHS_SLOWEST_FIRST) if odd_worker else GRAPHS_SLOWEST_FIRST:
        lock = FileLock(parts / f"{name}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # another worker is exporting it
        try:
            export_part(name)
        finally:
            lock.release()

    def assemble(staging) -> None:
        graphs = {}
        for name in GRAPH_NAMES:
            with FileLock(parts / f"{name}.lock"):  # waits for a worker still exporting it
                export_part(name)  # exports it here only if its worker failed (its error then shows here)
            for file in (parts / name).iterdir():  # the graph, and the config and processor every part holds
                if file.name != MANIFEST_NAME:
                    shutil.copy2(file, staging / file.name)
            graphs[name] = json.loads((parts / name / MANIFEST_NAME).read_text())["graphs"][name]
        write_manifest(staging, build_manifest(model, export_processor(model, processor), graphs, DEFAULT_OPSET))

    with FileLock(shared / "onnx_export.lock"):
        if not (folder / MANIFEST_NAME).exists():
            write_folder_atomically(folder, assemble)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    return model, processor, folder, manifest


@pytest.fixture(scope="package")
def model_dir(exported, tmp_path_factory):
    """The exported tiny model and processor saved as a trained folder (what `autosam-export --model` reads)."""
    model, processor, _, _ = exported
    folder = tmp_path_factory.mktemp("trained")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="package")
def kvasir_images(shared_data_dir) -> list[PIL.Image.Image]:
    """Three real Kvasir-SEG images: two test images (352×352) and a full-resolution original (not square, so the
    canvases are padded)."""
    kvasir = shared_data_dir / "kvasir"
    paths = sorted((kvasir / "test" / "images").iterdir())[:2]
    paths += sorted((kvasir / "original_resolution_samples" / "images").iterdir())[:1]
    return [PIL.Image.open(path).convert("RGB") for path in paths]


def max_difference(actual, expected) -> float:
    """max |actual − expected| of two arrays or tensors."""
    return float((torch.as_tensor(actual).float() - torch.as_tensor(expected).float()).abs().max())
