"""`autosam-predict --backend onnxruntime`: an autosam-export folder segments like the PyTorch model (the same
masks through the same batching and post-processing), and bad combinations end in one line, exit status 2."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import command_error_line

from autosam_hf.export import MANIFEST_NAME
from autosam_hf.inference import iter_predictions
from autosam_hf.inference.cli import main


@pytest.fixture(scope="module")
def image_folder(kvasir_images, tmp_path_factory):
    """The real images as lossless PNGs, so the command and the reference read the same pixels."""
    folder = tmp_path_factory.mktemp("images")
    for index, image in enumerate(kvasir_images):
        image.save(folder / f"kvasir_{index}.png")
    return folder


def read_images(folder) -> list[tuple[str, np.ndarray]]:
    return [(path.stem, np.asarray(PIL.Image.open(path).convert("RGB"))) for path in sorted(folder.glob("*.png"))]


def error_line(argv, capsys) -> str:
    return command_error_line(main, argv, capsys, "autosam-predict")


@pytest.mark.parametrize("fast", [False, True], ids=["autosam", "surrogate"])
def test_onnxruntime_backend_writes_the_pytorch_masks(exported, image_folder, tmp_path, fast):
    model, processor, folder, _ = exported
    mode = "surrogate" if fast else "autosam"
    items = read_images(image_folder)
    reference = dict(iter_predictions(model, processor, items, mode=mode))
    # The random tiny model's logits may all sit below its threshold (0): their median splits the images instead.
    threshold = float(torch.cat([prediction.logits.flatten() for prediction in reference.values()]).median())
    expected = dict(iter_predictions(model, processor, items, mode=mode, mask_threshold=threshold))
    out = tmp_path / "out"
    argv = ["--backend", "onnxruntime", "--model", str(folder), str(image_folder), "--output_dir", str(out)]
    argv += ["--mask_threshold", str(threshold), "--batch_size", "2", "--quiet", *(["--fast"] if fast else [])]
    assert main(argv) == 0
    for name, prediction in expected.items():
        written = np.asarray(PIL.Image.open(out / "masks" / f"{name}.png")) == 255
        decided = ((reference[name].logits - threshold).abs() > 1e-4).numpy()  # beyond the parity tolerance
        assert decided.mean() > 0.9
        np.testing.assert_array_equal(written[decided], prediction.mask[decided])
        assert (out / "overlays" / f"{name}.png").is_file()


def test_onnxruntime_backend_names_bad_input(exported, image_folder, tmp_path, capsys):
    model_dir = tmp_path / "trained"
    model_dir.mkdir()  # a folder, but not an export
    base = [str(image_folder), "--output_dir", str(tmp_path / "out"), "--quiet", "--backend", "onnxruntime"]
    assert "is not an ONNX export" in error_line([*base, "--model", str(model_dir)], capsys)
    _, _, folder, _ = exported
    line = error_line([*base, "--model", str(folder), "--dtype", "bfloat16"], capsys)
    assert "--dtype bfloat16: --backend onnxruntime runs the exported float32 graphs" in line
    # An export without h (autosam-export --graphs encoder,prompt_decoder) has no --fast.
    partial = tmp_path / "partial"
    partial.mkdir()
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    del manifest["graphs"]["surrogate"]
    (partial / MANIFEST_NAME).write_text(json.dumps(manifest))
    for path in folder.iterdir():
        if path.name not in (MANIFEST_NAME, "surrogate.onnx"):
            (partial / path.name).symlink_to(path)
    assert "has no surrogate decoder h" in error_line([*base, "--model", str(partial), "--fast"], capsys)
    # No export has SAM's own mask-prompt mode; the command says so before writing anything.
    line = error_line([*base, "--model", str(folder), "--mode", "sam_mask_prompt"], capsys)
    assert "--mode sam_mask_prompt" in line and "modes exported: autosam, surrogate" in line
    assert not (tmp_path / "out").exists()


def test_auto_backend_runs_the_faster_of_the_trained_folder_and_its_export(
    exported, model_dir, image_folder, tmp_path, capsys, monkeypatch
):
    from autosam_hf.inference import cli

    faster = "onnxruntime"  # as measured below (the choice itself: tests/inference/test_backends.py)

    _, _, folder, _ = exported
    trained = tmp_path / "trained"  # a trained folder with its export in onnx/, as autosam-export's docs put it
    trained.mkdir()
    for path in model_dir.iterdir():
        (trained / path.name).symlink_to(path)
    (trained / "onnx").symlink_to(folder, target_is_directory=True)
    timings = {"pytorch": 2.0, "onnxruntime": 1.0}
    timed = []
    monkeypatch.setattr(cli, "time_backends", lambda runs: timed.append(sorted(runs)) or timings)
    base = [str(image_folder), "--quiet", "--mask_threshold", "0.5"]
    assert main(["--backend", "auto", "--model", str(trained), *base, "--output_dir", str(tmp_path / "auto")]) == 0
    assert f"--backend auto: {faster} (" in capsys.readouterr().out and timed == [["onnxruntime", "pytorch"]]
    out = tmp_path / faster
    assert main(["--backend", faster, "--model", str(folder), *base, "--output_dir", str(out)]) == 0
    for path in sorted((out / "masks").glob("*.png")):
        written = np.asarray(PIL.Image.open(tmp_path / "auto" / "masks" / path.name))
        np.testing.assert_array_equal(written, np.asarray(PIL.Image.open(path)))
