"""`autosam-eval` (autosam_hf.evaluation.cli): the paper-shaped tables on real images, saved predictions, SUN-SEG
columns, and errors on bad input before any work."""

import json

import numpy as np
import PIL.Image
import pytest
from conftest import make_tiny_model, make_tiny_processor

from autosam_hf.evaluation.cli import main
from evaluation.sample_data import polyp_root_without_clinicdb, write_sunseg_split


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
            "--batch_size",
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
    assert (
        "| Method | Kvasir-SEG Dice | Kvasir-SEG IoU | ETIS-LaribPolypDB Dice | ETIS-LaribPolypDB IoU |" in table_lines
    )
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


def test_cli_clicks_mode_sits_beside_sam_with_one_click(model_dir, shared_data_dir, tmp_path):
    """The tiny model's real decoder with simulated clicks: AutoSAM + k clicks rows next to SAM + 1 click, and NoC."""
    output_dir = tmp_path / "eval"
    argv = ["--model", str(model_dir), "--preset", "kvasir", "--data", str(shared_data_dir / "kvasir")]
    argv += ["--max_samples", "1", "--mode", "sam_gt_point", "autosam_clicks", "autosam", "--max_clicks", "3"]
    assert main([*argv, "--output_dir", str(output_dir), "--quiet"]) == 0
    report, markdown = read_report(output_dir)
    clicks = report["results"]["autosam_clicks"]["kvasir"]
    assert clicks["dice@0"] == report["results"]["autosam"]["kvasir"]["dice"]
    assert clicks["dice"] == clicks["dice@3"] and "dice@5" not in clicks
    assert all(1 <= clicks[key] <= 20 or clicks[key] == 0 for key in ("noc@85", "noc@90"))
    assert clicks["noc@85"] <= clicks["noc@90"]
    per_image = report["per_image"]["kvasir"]["autosam_clicks"]
    assert clicks["noc@90"] == pytest.approx(np.mean([scores["noc@90"] for scores in per_image.values()]))
    rows = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[:6] == ["| Method", "| SAM + 1 click (GT point)", "| AutoSAM + 0 clicks", "| AutoSAM + 1 click",
                        "| AutoSAM + 3 clicks", "| AutoSAM"]  # fmt: skip
    assert "| Method | Kvasir-SEG NoC@85 | Kvasir-SEG NoC@90 |" in markdown and "counts as 20" in markdown
    assert report["settings"]["max_clicks"] == 3


def test_cli_runs_a_sam_free_model_in_its_own_mode_and_builds_the_canvases_asked_for(shared_data_dir, tmp_path, capsys):
    """A `--stage standalone` model (default mode surrogate; its processor builds g's canvas only) is scored in its
    own mode by default, and in SAM's modes when asked: the evaluation builds the canvases its modes read."""
    model_dir = tmp_path / "standalone"
    model = make_tiny_model()
    model.config.default_mode = "surrogate"
    model.save_pretrained(model_dir)
    processor = make_tiny_processor()
    processor.canvases = ["prompt"]  # as `autosam-train --stage standalone` saves it
    processor.save_pretrained(model_dir)
    assert json.loads((model_dir / "preprocessor_config.json").read_text())["canvases"] == ["prompt"]
    common = ["--model", str(model_dir), "--preset", "kvasir", "--data", str(shared_data_dir / "kvasir")]
    common += ["--max_samples", "2", "--quiet"]

    assert main([*common, "--output_dir", str(tmp_path / "own")]) == 0
    own, _ = read_report(tmp_path / "own")
    assert own["modes"] == ["surrogate"] and own["test"]["kvasir"] == own["results"]["surrogate"]["kvasir"]

    assert main([*common, "--mode", "autosam", "surrogate", "--output_dir", str(tmp_path / "both")]) == 0
    both, _ = read_report(tmp_path / "both")
    assert set(both["results"]) == {"autosam", "surrogate"}
    assert_metrics_in_unit_interval(both)
    assert both["per_image"]["kvasir"]["surrogate"] == own["per_image"]["kvasir"]["surrogate"]


def test_cli_polyp_benchmark_keeps_paper_columns_and_marks_missing(model_dir, shared_data_dir, tmp_path):
    output_dir = tmp_path / "eval"
    data_root = polyp_root_without_clinicdb(shared_data_dir, tmp_path)
    argv = ["--model", str(model_dir), "--eval", "polyps", "--data_root", str(data_root), "--max_samples", "1"]
    status = main([*argv, "--output_dir", str(output_dir), "--quiet"])
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
        "| Method | Kvasir-SEG Dice | Kvasir-SEG IoU | CVC-ClinicDB Dice | CVC-ClinicDB IoU | CVC-ColonDB Dice | "
        "CVC-ColonDB IoU | ETIS-LaribPolypDB Dice | ETIS-LaribPolypDB IoU |"
    ) in markdown
    autosam_row = next(line for line in markdown.splitlines() if line.startswith("| AutoSAM |"))
    assert autosam_row.split(" | ")[3:5] == ["–", "–"]
    assert "cvc_colondb/test_subset" in markdown and "CVC-ClinicDB: not evaluated" in markdown


def test_cli_video_preset_writes_sunseg_columns(model_dir, tmp_path):
    root = write_sunseg_split(tmp_path / "SUN-SEG", {"a": 4, "b": 4}, {"a": ["left"] * 4, "b": ["right"] * 4})
    output_dir = tmp_path / "eval"
    argv = ["--model", str(model_dir), "--preset", "sunseg_easy", "--data", str(root)]
    assert main([*argv, "--output_dir", str(output_dir), "--quiet"]) == 0
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


def test_cli_bad_inputs_fail_before_any_work_naming_the_culprit(model_dir, shared_data_dir, tmp_path, capsys):
    def error_of(argv):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert "Traceback" not in error
        return error.strip().splitlines()[-1]

    kvasir = f"kvasir={shared_data_dir / 'kvasir'}"
    # Data problems are reported before the (here also broken) model is even loaded.
    assert "missing_folder" in error_of(
        ["--model", str(tmp_path / "no_model"), "--datasets", f"kvasir={tmp_path / 'missing_folder'}"]
    )
    assert "'polypz'" in error_of(["--model", str(model_dir), "--preset", "polypz"])
    no_model = tmp_path / "not_a_model"
    no_model.mkdir()
    message = error_of(["--model", str(no_model), "--datasets", kvasir, "--output_dir", str(tmp_path / "o")])
    assert message.startswith("autosam-eval: error: ") and str(no_model) in message
    assert not (tmp_path / "o").exists()

    plain = tmp_path / "without_h"
    make_tiny_model(use_surrogate_decoder=False).save_pretrained(plain)
    assert "surrogate" in error_of(["--model", str(plain), "--datasets", kvasir, "--mode", "surrogate"])

    for argv, message in (
        (["--model", str(model_dir), "--datasets", kvasir, "--mode", "sam_gt_scribble"], "invalid choice"),
        # Without --preset, --data is a folder of one's own: it needs images/ + masks/ (or test/images, ...).
        (["--model", str(model_dir), "--data", str(no_model)], str(no_model)),
        (["--model", str(model_dir)], "give at least one dataset"),
        (["--model", str(model_dir), "--datasets", kvasir, "--batch_size", "0"], "--batch_size"),
    ):
        assert message in error_of(argv)
