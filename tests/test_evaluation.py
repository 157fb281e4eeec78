"""`autosam-eval` and its Python API: the paper-shaped tables on real images, metrics at the original resolution
(exact oracles through the GT-mask pathway), GT prompt derivation, saved predictions, SUN-SEG per-case averaging,
and errors on bad input."""

import json
import types

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor

from autosam_hf.data import IMAGE_FEATURES, load_preset_dataset
from autosam_hf.evaluation import (
    DatasetSpec,
    evaluate_dataset,
    evaluate_model,
    format_markdown_table,
    main,
    parse_dataset_spec,
    resolve_dataset_spec,
    resolve_datasets,
)
from autosam_hf.evaluation_modes import (
    GT_MASK_LOGIT,
    box_prompt_from_mask,
    mask_prompt_from_labels,
    point_prompt_from_mask,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_model")
    make_tiny_model().save_pretrained(folder)
    make_tiny_processor().save_pretrained(folder)
    return folder


def read_report(output_dir):
    report = json.loads((output_dir / "eval_results.json").read_text())
    return report, (output_dir / "eval_results.md").read_text()


def assert_metrics_in_unit_interval(report):
    for per_dataset in report["results"].values():
        for metrics in per_dataset.values():
            assert metrics and all(0.0 <= value <= 1.0 for value in metrics.values()), metrics


# ---------------------------------------------------------------------------------------------- CLI, real data
def test_cli_on_real_images_writes_paper_table_and_predictions(model_dir, shared_data_dir, tmp_path, capsys):
    output_dir = tmp_path / "eval"
    status = main(
        [
            "--model",
            str(model_dir),
            "--datasets",
            f"kvasir={shared_data_dir / 'kvasir'}",
            f"etis={shared_data_dir / 'etis_laribpolypdb'}",
            "--max-samples",
            "2",
            "--batch-size",
            "3",
            "--mode",
            "autosam",
            "surrogate",
            "sam_gt_box",
            "--output-dir",
            str(output_dir),
            "--save_predictions",
            "--quiet",
        ]
    )
    assert status == 0
    report, markdown = read_report(output_dir)

    assert report["modes"] == ["autosam", "surrogate", "sam_gt_box"]
    assert [entry["key"] for entry in report["datasets"]] == ["kvasir", "etis"]
    assert [entry["num_images"] for entry in report["datasets"]] == [2, 2]
    assert report["datasets"][1]["source"].endswith("etis_laribpolypdb/test_subset/images")
    assert set(report["results"]) == {"autosam", "surrogate", "sam_gt_box"}
    assert all(set(per_dataset) == {"kvasir", "etis"} for per_dataset in report["results"].values())
    assert_metrics_in_unit_interval(report)
    # Dataset Dice/IoU = mean of the per-image scores.
    per_image = report["per_image"]["etis"]["sam_gt_box"]
    assert len(per_image) == 2
    assert report["results"]["sam_gt_box"]["etis"]["dice"] == pytest.approx(
        np.mean([s["dice"] for s in per_image.values()])
    )
    # The model's own row (default_mode "autosam") in the schema the model card reads.
    assert report["test"]["kvasir"] == report["results"]["autosam"]["kvasir"]

    table_lines = markdown.splitlines()
    assert "| Method | Kvasir Dice | Kvasir IoU | ETIS Dice | ETIS IoU |" in table_lines
    rows = [line for line in table_lines if line.startswith("| ") and not line.startswith("| Method")]
    assert [row.split(" | ")[0] for row in rows] == ["| AutoSAM", "| AutoSAM surrogate h(g(I))", "| SAM, GT box"]
    dice = report["results"]["autosam"]["kvasir"]["dice"]
    assert rows[0].split(" | ")[1] == f"{dice:.3f}"
    assert markdown in capsys.readouterr().out

    # --save_predictions: binary masks at each image's original size, overlays, and an overlay grid per mode.
    for key, size in (("kvasir", (352, 352)), ("etis", (1225, 966))):
        for mode in report["modes"]:
            folder = output_dir / "predictions" / key / mode
            masks = sorted((folder / "masks").glob("*.png"))
            assert len(masks) == 2
            for path in masks:
                with PIL.Image.open(path) as mask:
                    assert mask.size == size and mask.mode == "L"
                    assert set(np.unique(np.asarray(mask))) <= {0, 255}
                with PIL.Image.open(folder / "overlays" / path.name) as overlay:
                    assert overlay.size == size and overlay.mode == "RGB"
            assert (folder / "overlay_grid.png").is_file()
    # The saved mask is the one that was scored.
    first_id = next(iter(report["per_image"]["kvasir"]["autosam"]))
    saved = (
        np.asarray(PIL.Image.open(output_dir / "predictions" / "kvasir" / "autosam" / "masks" / f"{first_id}.png")) > 0
    )
    target = np.asarray(PIL.Image.open(shared_data_dir / "kvasir" / "test" / "masks" / f"{first_id}.png")) > 127
    intersection, total = (saved & target).sum(), saved.sum() + target.sum()
    expected_dice = 2 * intersection / total if total else 1.0
    assert report["per_image"]["kvasir"]["autosam"][first_id]["dice"] == pytest.approx(expected_dice)


def polyp_root_without_clinicdb(shared_data_dir, tmp_path):
    """A data root holding three of the four polyp benchmark sets (links to the real ones), ClinicDB missing."""
    root = tmp_path / "data_root"
    root.mkdir()
    for name in ("kvasir", "cvc_colondb", "etis_laribpolypdb"):
        (root / name).symlink_to(shared_data_dir / name, target_is_directory=True)
    return root


def test_cli_polyp_benchmark_keeps_paper_columns_and_marks_missing(model_dir, shared_data_dir, tmp_path):
    output_dir = tmp_path / "eval"
    data_root = polyp_root_without_clinicdb(shared_data_dir, tmp_path)
    status = main(
        [
            "--model",
            str(model_dir),
            "--eval",
            "polyps",
            "--data-root",
            str(data_root),
            "--max-samples",
            "1",
            "--output-dir",
            str(output_dir),
            "--quiet",
        ]
    )
    assert status == 0
    report, markdown = read_report(output_dir)
    assert [(entry["key"], entry["evaluated"]) for entry in report["datasets"]] == [
        ("kvasir", True),
        ("clinicdb", False),
        ("colondb", True),
        ("etis", True),
    ]
    assert set(report["results"]["autosam"]) == {"kvasir", "colondb", "etis"}
    assert_metrics_in_unit_interval(report)
    assert (
        "| Method | Kvasir Dice | Kvasir IoU | ClinicDB Dice | ClinicDB IoU | ColonDB Dice | ColonDB IoU | "
        "ETIS Dice | ETIS IoU |"
    ) in markdown
    autosam_row = next(line for line in markdown.splitlines() if line.startswith("| AutoSAM |"))
    assert autosam_row.split(" | ")[3:5] == ["–", "–"]
    assert "cvc_colondb/test_subset" in markdown and "ClinicDB: not evaluated" in markdown


# ---------------------------------------------------------------------------------------------- oracles
def make_dataset(images, masks, ids=None):
    import datasets

    ids = ids or [str(index) for index in range(len(images))]
    return datasets.Dataset.from_dict(
        {
            "id": ids,
            "image": [PIL.Image.fromarray(image) for image in images],
            "mask": [PIL.Image.fromarray(mask.astype(np.uint8)) for mask in masks],
        },
        features=IMAGE_FEATURES,
    )


def fake_sam_returning(transform):
    """A SAM forward that returns `transform(input_masks)` as its prediction (B, 1, 1, 4E, 4E)."""

    def forward(image_embeddings=None, input_masks=None, multimask_output=False, **kwargs):
        assert input_masks is not None and not multimask_output
        masks = transform(input_masks.clone())
        return types.SimpleNamespace(pred_masks=masks[:, None], iou_scores=torch.ones(masks.shape[0], 1, 1))

    return forward


def keep_upper_half_of_foreground(masks):
    for mask in masks[:, 0]:
        rows = torch.nonzero((mask > 0).any(dim=1)).flatten()
        mask[(rows.min() + rows.max() + 1) // 2 :] = -GT_MASK_LOGIT
    return masks


@pytest.fixture
def band_dataset():
    """Non-square and square images whose masks are horizontal bands on boundaries that survive the resampling
    chain (original → 4E canvas → SAM input size → original) exactly: a canvas-perfect prediction is pixel-perfect
    at the original size."""
    rng = np.random.default_rng(0)
    shapes_and_bands = [((96, 192), (32, 64)), ((96, 96), (40, 72))]
    images, masks = [], []
    for (height, width), (top, bottom) in shapes_and_bands:
        images.append(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[top:bottom] = 1
        masks.append(mask)
    return make_dataset(images, masks)


def test_oracle_perfect_prediction_scores_one_at_original_resolution(band_dataset, monkeypatch):
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(lambda masks: masks))
    result = evaluate_dataset(model, processor, band_dataset, ["sam_gt_mask"], batch_size=2, progress=False)
    scores = result["sam_gt_mask"]
    assert scores.per_image == {"0": {"dice": 1.0, "iou": 1.0}, "1": {"dice": 1.0, "iou": 1.0}}
    assert scores.metrics["dice"] == 1.0 and scores.metrics["iou"] == 1.0


def test_oracle_half_prediction_gives_exact_dice_and_iou(band_dataset, monkeypatch):
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(keep_upper_half_of_foreground))
    metrics = evaluate_model(model, processor, band_dataset, ["sam_gt_mask"], batch_size=1, progress=False)
    # Prediction = upper half of the target band: Dice = 2·(1/2)/(1/2 + 1) = 2/3, IoU = 1/2, for both images.
    assert metrics["sam_gt_mask"]["dice"] == pytest.approx(2 / 3, abs=1e-12)
    assert metrics["sam_gt_mask"]["iou"] == pytest.approx(1 / 2, abs=1e-12)


def test_empty_ground_truth_gives_empty_prediction_for_gt_prompt_modes():
    model, processor = make_tiny_model(), make_tiny_processor()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8) for _ in range(2)]
    masks = [np.zeros((40, 30)), np.pad(np.ones((10, 10)), ((5, 25), (10, 10)))]
    modes = ["sam_gt_point", "sam_gt_box", "sam_gt_mask"]
    results = evaluate_dataset(model, processor, make_dataset(images, masks), modes, batch_size=2, progress=False)
    for mode in modes:
        # Empty target, empty prediction: Dice = IoU = 1 by the metrics' rule; the other image is scored normally.
        assert results[mode].per_image["0"] == {"dice": 1.0, "iou": 1.0}
        assert 0.0 <= results[mode].per_image["1"]["dice"] <= 1.0


def test_image_embeddings_are_computed_once_per_batch(band_dataset):
    model, processor = make_tiny_model(), make_tiny_processor()
    calls = []
    encoder_forward = model.sam.vision_encoder.forward
    model.sam.vision_encoder.forward = lambda *args, **kwargs: calls.append(1) or encoder_forward(*args, **kwargs)
    modes = ["autosam", "sam_mask_prompt", "sam_gt_point", "sam_gt_box", "sam_gt_mask", "surrogate"]
    evaluate_dataset(model, processor, band_dataset, modes, batch_size=2, progress=False)
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------- GT prompts
def test_gt_point_is_the_interior_maximum_scaled_to_the_canvas():
    processor = make_tiny_processor()
    height, width = 31, 60  # longest edge 60 → 24: canvas (12, 24); x scale 24/60, y scale 12/31
    rows, columns = np.ogrid[:height, :width]
    mask = (rows - 15) ** 2 + (columns - 40) ** 2 <= 8**2  # a disk centred at row 15, column 40
    mask[14:17, 0:30] = True  # and a thin bar: far from the disk's centre in distance-transform terms
    reshaped = processor.reshaped_size((height, width))
    assert reshaped == (12, 24)
    assert point_prompt_from_mask(mask, reshaped) == pytest.approx((40 * 24 / 60, 15 * 12 / 31))
    # The image border counts as boundary: a full mask's point is its centre, not a corner.
    assert point_prompt_from_mask(np.ones((5, 5), bool), (5, 5)) == (2.0, 2.0)
    assert point_prompt_from_mask(np.zeros((5, 7), bool), (5, 7)) is None


def test_gt_box_is_the_tight_bound_scaled_to_the_canvas():
    processor = make_tiny_processor()
    mask = np.zeros((31, 60), dtype=bool)
    mask[7:24, 12:49] = True
    mask[28, 55] = True  # a stray pixel widens the box
    box = box_prompt_from_mask(mask, processor.reshaped_size(mask.shape))
    assert box == pytest.approx((12 * 0.4, 7 * 12 / 31, 55 * 0.4, 28 * 12 / 31))
    assert box_prompt_from_mask(np.zeros((4, 4)), (4, 4)) is None


def test_gt_mask_prompt_is_plus_minus_logit_on_the_label_canvas():
    labels = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    prompt = mask_prompt_from_labels(labels)
    assert prompt.shape == (1, 1, 2, 2)
    assert prompt[0, 0].tolist() == [[-GT_MASK_LOGIT, GT_MASK_LOGIT], [GT_MASK_LOGIT, -GT_MASK_LOGIT]]


# ---------------------------------------------------------------------------------------------- video
def write_sunseg_split(root, frames_per_case, band_sides):
    """SUN-SEG layout `TestEasyDataset/Unseen/{Frame,GT}/<case>/<frame>.{jpg,png}`, 96×96 frames whose masks are
    full-height bands on the left or the right half."""
    split = root / "TestEasyDataset" / "Unseen"
    rng = np.random.default_rng(0)
    for case, sides in band_sides.items():
        assert len(sides) == frames_per_case[case]
        (split / "Frame" / case).mkdir(parents=True)
        (split / "GT" / case).mkdir(parents=True)
        for index, side in enumerate(sides):
            PIL.Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(
                split / "Frame" / case / f"{case}_frame{index}.jpg"
            )
            mask = np.zeros((96, 96), dtype=np.uint8)
            mask[:, 8:40] = 255 if side == "left" else 0
            mask[:, 56:88] = 255 if side == "right" else 0
            PIL.Image.fromarray(mask).save(split / "GT" / case / f"{case}_frame{index}.png")
    return root


def keep_left_half_of_canvas(masks):
    masks[..., masks.shape[-1] // 2 :] = -GT_MASK_LOGIT
    return masks


def test_video_metrics_are_per_case_then_averaged(tmp_path, monkeypatch):
    # Case "a": 4 frames, all scored 1. Case "b": 6 frames; its middle frames score 1, 1, 0, 0; its first and last
    # frames (left out, as in SUN-SEG's toolbox) would score 1.
    sides = {"a": ["left"] * 4, "b": ["left", "left", "left", "right", "right", "left"]}
    root = write_sunseg_split(tmp_path / "SUN-SEG", {"a": 4, "b": 6}, sides)
    dataset = load_preset_dataset("sunseg_easy", "test", root)
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(keep_left_half_of_canvas))

    result = evaluate_dataset(model, processor, dataset, ["sam_gt_mask"], batch_size=3, progress=False)["sam_gt_mask"]
    assert result.per_case["a"]["dice"] == pytest.approx(1.0)
    assert result.per_case["b"]["dice"] == pytest.approx(0.5)
    # Per case, then over cases: (1 + 0.5) / 2, not the frame-pooled (2 + 2) / 6.
    assert result.metrics["dice"] == pytest.approx(0.75)
    assert result.metrics["iou"] == pytest.approx(0.75)
    # Frames are put in time order whatever the row order.
    shuffled = dataset.select([5, 0, 9, 1, 3, 8, 2, 7, 4, 6])
    again = evaluate_dataset(model, processor, shuffled, ["sam_gt_mask"], batch_size=4, progress=False)["sam_gt_mask"]
    assert again.metrics == pytest.approx(result.metrics)

    every_frame = evaluate_dataset(
        model, processor, dataset, ["sam_gt_mask"], skip_first_and_last_frame=False, progress=False
    )["sam_gt_mask"]
    assert every_frame.per_case["b"]["dice"] == pytest.approx(4 / 6)


def test_cli_video_preset_writes_sunseg_columns(model_dir, tmp_path):
    root = write_sunseg_split(tmp_path / "SUN-SEG", {"a": 4, "b": 4}, {"a": ["left"] * 4, "b": ["right"] * 4})
    output_dir = tmp_path / "eval"
    status = main(
        [
            "--model",
            str(model_dir),
            "--preset",
            "sunseg_easy",
            "--data",
            str(root),
            "--output-dir",
            str(output_dir),
            "--quiet",
        ]
    )
    assert status == 0
    report, markdown = read_report(output_dir)
    assert report["datasets"][0]["video"] and report["datasets"][0]["num_cases"] == 2
    assert set(report["per_case"]["sunseg_easy"]["autosam"]) == {"a", "b"}
    assert_metrics_in_unit_interval(report)
    assert (
        "| Method | SUN-SEG Easy S-alpha | SUN-SEG Easy mean E-phi | SUN-SEG Easy weighted F | "
        "SUN-SEG Easy mean F | SUN-SEG Easy Dice | SUN-SEG Easy Sensitivity |"
    ) in markdown
    per_case = report["per_case"]["sunseg_easy"]["autosam"]
    assert report["results"]["autosam"]["sunseg_easy"]["s_alpha"] == pytest.approx(
        np.mean([scores["s_alpha"] for scores in per_case.values()])
    )


# ---------------------------------------------------------------------------------------------- tables
def test_format_markdown_table_rows_modes_columns_datasets():
    results = {
        "sam_gt_box": {"kvasir": {"dice": 0.5, "iou": 0.25}},
        "autosam": {
            "kvasir": {"dice": 0.91234, "iou": 0.85},
            "sunseg_easy": {
                "s_alpha": 0.8,
                "e_phi_mean": 0.7,
                "f_beta_weighted": 0.6,
                "f_beta_mean": 0.5,
                "dice_threshold_mean": 0.4,
                "sensitivity": 0.3,
            },
        },
    }
    table = format_markdown_table(results, ["kvasir", "etis", "sunseg_easy"])
    image_table, video_table = table.split("\n\n")
    assert image_table.splitlines() == [
        "| Method | Kvasir Dice | Kvasir IoU | ETIS Dice | ETIS IoU |",
        "|---|---:|---:|---:|---:|",
        "| SAM, GT box | 0.500 | 0.250 | – | – |",
        "| AutoSAM | 0.912 | 0.850 | – | – |",
    ]
    assert video_table.splitlines()[-1] == "| AutoSAM | 0.800 | 0.700 | 0.600 | 0.500 | 0.400 | 0.300 |"


# ---------------------------------------------------------------------------------------------- bad input
def test_dataset_specs_resolve_and_reject_bad_names(shared_data_dir, tmp_path):
    assert parse_dataset_spec("glas:testA=/x") == DatasetSpec("glas", "testA", __import__("pathlib").Path("/x"))
    with pytest.raises(ValueError, match="kvasirr.*Known presets"):
        parse_dataset_spec("kvasirr=/x")
    with pytest.raises(ValueError, match="no split 'dev'"):
        parse_dataset_spec("kvasir:dev")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_dataset_spec(parse_dataset_spec(f"etis={tmp_path / 'nowhere'}"), None)
    with pytest.raises(FileNotFoundError, match="holds no 'test' split"):
        resolve_dataset_spec(parse_dataset_spec(f"etis={tmp_path}"), None)
    with pytest.raises(FileNotFoundError, match="tried the folders etis, etis_laribpolypdb"):
        resolve_dataset_spec(parse_dataset_spec("etis"), tmp_path)
    data_root = polyp_root_without_clinicdb(shared_data_dir, tmp_path)
    specs = resolve_datasets([parse_dataset_spec("etis")], ["polyps"], data_root)
    assert [(spec.key, spec.data_dir and spec.data_dir.name) for spec in specs] == [
        ("etis", "etis_laribpolypdb"),
        ("kvasir", "kvasir"),
        ("clinicdb", None),
        ("colondb", "cvc_colondb"),
    ]


def test_cli_bad_inputs_fail_before_any_work_naming_the_culprit(model_dir, shared_data_dir, tmp_path, capsys):
    def error_of(argv):
        assert main(argv) == 1
        return capsys.readouterr().err

    kvasir = f"kvasir={shared_data_dir / 'kvasir'}"
    # Data problems are reported before the (here also broken) model is even loaded.
    assert "missing_folder" in error_of(
        ["--model", str(tmp_path / "no_model"), "--datasets", f"kvasir={tmp_path / 'missing_folder'}"]
    )
    assert "'polypz'" in error_of(["--model", str(model_dir), "--preset", "polypz"])
    no_model = tmp_path / "not_a_model"
    no_model.mkdir()
    assert str(no_model) in error_of(
        ["--model", str(no_model), "--datasets", kvasir, "--output-dir", str(tmp_path / "o")]
    )
    assert not (tmp_path / "o").exists()

    plain = tmp_path / "without_h"
    make_tiny_model(use_surrogate_decoder=False).save_pretrained(plain)
    assert "surrogate" in error_of(["--model", str(plain), "--datasets", kvasir, "--mode", "surrogate"])

    for argv in (
        ["--model", str(model_dir), "--datasets", kvasir, "--mode", "sam_gt_scribble"],
        ["--model", str(model_dir), "--data", str(shared_data_dir / "kvasir")],
        ["--model", str(model_dir)],
        ["--model", str(model_dir), "--datasets", kvasir, "--batch-size", "0"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
