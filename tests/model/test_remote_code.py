"""A saved AutoSAM folder is self-contained: a fresh Python that never imports `autosam_hf` loads it with
`trust_remote_code=True` (AutoModel, AutoModelForSemanticSegmentation, AutoImageProcessor, the
`image-segmentation` pipeline) and reproduces the in-process outputs."""

import json
import os
import sys
import textwrap

import numpy as np
import PIL.Image
import torch
from conftest import REPO_ROOT, run_command

from autosam_hf import AUTOSAM_MODES

REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import numpy as np
    import PIL.Image
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation, pipeline

    folder, work = sys.argv[1], Path(sys.argv[2])
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)

    pixel_values = torch.load(work / "pixel_values.pt", weights_only=True)
    image = np.load(work / "image.npy")
    outputs = {"processed": processor(image)["pixel_values"]}
    with torch.no_grad():
        for mode in ("autosam", "surrogate", "sam_mask_prompt"):
            outputs[mode] = model(pixel_values, mode=mode).logits
        outputs["auto_model"] = base(pixel_values).logits
    torch.save(outputs, work / "remote_outputs.pt")

    segmenter = pipeline("image-segmentation", model=folder, trust_remote_code=True)
    annotations = segmenter(PIL.Image.fromarray(image))
    for i, annotation in enumerate(annotations):
        np.save(work / f"mask_{i}.npy", np.asarray(annotation["mask"]))

    report = {
        "classes": [type(model).__name__, type(base).__name__, type(processor).__name__,
                    type(segmenter.model).__name__],
        "modules": [type(model).__module__, type(base).__module__, type(processor).__module__],
        "model_training": model.training,
        "sam_frozen": not any(p.requires_grad for p in model.sam.parameters()),
        "labels": [annotation["label"] for annotation in annotations],
        "autosam_hf_imported": any(name.split(".")[0] == "autosam_hf" for name in sys.modules),
    }
    (work / "report.json").write_text(json.dumps(report))
    """
)


def test_saved_folder_runs_as_remote_code(tiny_model, tiny_processor, tmp_path):
    folder, work, elsewhere = tmp_path / "autosam-tiny", tmp_path / "work", tmp_path / "elsewhere"
    for directory in (work, elsewhere):
        directory.mkdir()
    tiny_model.eval()
    tiny_model.save_pretrained(folder)
    tiny_processor.save_pretrained(folder)

    saved = {path.name for path in folder.iterdir()}
    assert {
        "configuration_autosam.py",
        "modeling_autosam.py",
        "backbones.py",
        "hardnet.py",
        "sam_loading.py",
        "sam_attention.py",
    } <= saved
    assert "image_processing_autosam.py" in saved
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSemanticSegmentation"}
    assert config["auto_map"]["AutoModelForSemanticSegmentation"] == "modeling_autosam.AutoSamForSegmentation"
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert "AutoImageProcessor" in preprocessor["auto_map"]

    image = np.random.default_rng(5).integers(0, 256, (30, 44, 3), dtype=np.uint8)  # non-square
    inputs = tiny_processor([image, image[:, ::-1].copy()])
    torch.save(inputs["pixel_values"], work / "pixel_values.pt")
    np.save(work / "image.npy", image)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # Same thread count as this process, so that the two runs compute bit for bit the same way.
    env.update(
        HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), OMP_NUM_THREADS=str(torch.get_num_threads())
    )
    result = run_command(
        [sys.executable, "-c", REMOTE_SCRIPT, str(folder), str(work)], cwd=elsewhere, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert not str(elsewhere).startswith(str(REPO_ROOT))

    report = json.loads((work / "report.json").read_text())
    assert report["autosam_hf_imported"] is False
    assert report["classes"] == ["AutoSamForSegmentation"] * 2 + ["AutoSamImageProcessor", "AutoSamForSegmentation"]
    assert all(module.startswith("transformers_modules") for module in report["modules"])
    assert report["model_training"] is False and report["sam_frozen"] is True

    remote = torch.load(work / "remote_outputs.pt", weights_only=True)
    torch.testing.assert_close(remote["processed"], tiny_processor(image)["pixel_values"], rtol=0, atol=0)
    with torch.no_grad():
        for mode in AUTOSAM_MODES:
            expected = tiny_model(inputs["pixel_values"], mode=mode).logits
            torch.testing.assert_close(remote[mode], expected, rtol=0, atol=1e-5, msg=mode)
        torch.testing.assert_close(remote["auto_model"], remote["autosam"], rtol=0, atol=0)

        # Pipeline: one mask per label present, from id2label, the size of the image, foreground as in-process.
        single = tiny_processor(image)
        logits = tiny_model(**single).logits
    expected_foreground = (tiny_processor.post_process_logits(logits, single["original_sizes"])[0] > 0).numpy()
    id2label = tiny_model.config.id2label
    assert report["labels"] and set(report["labels"]) <= set(id2label.values())
    masks = [np.load(work / f"mask_{i}.npy") > 0 for i in range(len(report["labels"]))]
    assert all(mask.shape == image.shape[:2] for mask in masks)
    assert (np.sum(masks, axis=0) == 1).all()
    foreground = dict(zip(report["labels"], masks, strict=True)).get(id2label[1], np.zeros(image.shape[:2], bool))
    np.testing.assert_array_equal(foreground, expected_foreground)
    assert PIL.Image.fromarray(image).size == (44, 30)
