"""autosam_hf.evaluation.report: the paper-shaped Markdown tables and the JSON report's model-card sections."""

from autosam_hf.evaluation import format_markdown_table
from autosam_hf.evaluation.datasets import DatasetSpec
from autosam_hf.evaluation.report import build_report, click_counts, format_detail_tables, format_noc_table
from autosam_hf.evaluation.scoring import ModeResult


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
    # Column titles are the presets' display names.
    assert image_table.splitlines() == [
        "| Method | Kvasir-SEG Dice | Kvasir-SEG IoU | ETIS-LaribPolypDB Dice | ETIS-LaribPolypDB IoU |",
        "|---|---:|---:|---:|---:|",
        "| SAM, GT box | 0.500 | 0.250 | – | – |",
        "| AutoSAM | 0.912 | 0.850 | – | – |",
    ]
    assert video_table.splitlines()[0].startswith("| Method | SUN-SEG Easy S-alpha | SUN-SEG Easy mean E-phi |")
    assert video_table.splitlines()[-1] == "| AutoSAM | 0.800 | 0.700 | 0.600 | 0.500 | 0.400 | 0.300 |"


def test_report_fills_the_model_card_sections_with_the_models_own_mode():
    specs = [DatasetSpec("kvasir", "test", None), DatasetSpec("kvasir", "val", None), DatasetSpec("etis")]
    autosam, surrogate = ModeResult({"dice": 0.9, "iou": 0.8}), ModeResult({"dice": 0.7, "iou": 0.6})
    results = {key: {"autosam": autosam, "surrogate": surrogate} for key in ("kvasir", "kvasir_val")}
    report = build_report("m", ["autosam", "surrogate"], specs, results, {}, {}, default_mode="autosam")
    assert report["test"] == {"kvasir": autosam.metrics} and report["validation"] == {"kvasir": autosam.metrics}
    assert [entry["evaluated"] for entry in report["datasets"]] == [True, True, False]
    assert report["datasets"][1]["display_name"] == "Kvasir-SEG (val)"
    report = build_report("m", ["autosam", "surrogate"], specs, results, {}, {}, default_mode="surrogate")
    assert report["test"] == {"kvasir": surrogate.metrics}


def test_multi_class_results_get_a_table_of_each_class_and_the_instance_metrics():
    scores = {"dice": 0.6, "iou": 0.5, "dice_interior": 0.8, "iou_interior": 0.7, "dice_boundary": 0.4}
    scores |= {"iou_boundary": 0.3, "foreground_dice": 0.9, "foreground_iou": 0.85, "aji": 0.55, "count_error": 12.0}
    results = {"surrogate": {"monuseg_boundary": scores}, "autosam": {"monuseg_boundary": scores}}
    tables = format_detail_tables(results, ["monuseg_boundary"], {"monuseg_boundary": "MoNuSeg boundary"})
    lines = tables.splitlines()
    assert lines[0] == "MoNuSeg boundary, per class:"
    assert lines[2] == (
        "| Method | Dice (interior) | IoU (interior) | Dice (boundary) | IoU (boundary) | Dice (any class) | "
        "IoU (any class) | AJI | count error |"
    )
    assert lines[-1] == "| AutoSAM | 0.800 | 0.700 | 0.400 | 0.300 | 0.900 | 0.850 | 0.550 | 12.000 |"
    # Binary results (the paper's metrics) get no such table.
    assert format_detail_tables({"autosam": {"kvasir": {"dice": 0.9, "iou": 0.8, "mae": 0.1}}}, ["kvasir"], {}) == ""


def test_clicks_rows_sit_in_the_image_table_and_noc_gets_its_own():
    clicks = {"dice": 0.8, "iou": 0.7, "dice@0": 0.5, "iou@0": 0.4, "dice@1": 0.6, "iou@1": 0.45, "dice@3": 0.8}
    clicks |= {"iou@3": 0.7, "noc@85": 4.5, "noc@90": 12.0}
    results = {"sam_gt_point": {"kvasir": {"dice": 0.55, "iou": 0.42}}, "autosam_clicks": {"kvasir": clicks}}
    assert click_counts(results) == [0, 1, 3]
    assert format_markdown_table(results, ["kvasir"]).splitlines()[2:] == [
        "| SAM + 1 click (GT point) | 0.550 | 0.420 |",
        "| AutoSAM + 0 clicks | 0.500 | 0.400 |",
        "| AutoSAM + 1 click | 0.600 | 0.450 |",
        "| AutoSAM + 3 clicks | 0.800 | 0.700 |",
    ]
    assert format_noc_table(results, ["kvasir", "etis"], {"kvasir": "Kvasir-SEG"}).splitlines() == [
        "| Method | Kvasir-SEG NoC@85 | Kvasir-SEG NoC@90 |",
        "|---|---:|---:|",
        "| AutoSAM + clicks | 4.500 | 12.000 |",
    ]
    assert format_noc_table({"autosam": {}}, ["kvasir"], {}) == ""
