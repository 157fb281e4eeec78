"""autosam_hf.visualization: overlays, overlay grids and training curves, written atomically as PNG."""

import json

import numpy as np
import PIL.Image
import pytest

from autosam_hf.visualization import (
    add_legend,
    class_colors,
    overlay_label_map,
    overlay_mask,
    plot_training_curves,
    save_overlay_grid,
    write_png,
)


def test_overlay_tints_the_mask_and_draws_its_contour():
    image = np.full((40, 40, 3), 100, np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    overlay = overlay_mask(image, mask, color=(0, 255, 0), alpha=0.5, contour_color=(255, 0, 0))
    np.testing.assert_array_equal(overlay[0, 0], [100, 100, 100])  # outside: unchanged
    np.testing.assert_array_equal(overlay[20, 20], [50, 178, 50])  # inside: half-way to green (177.5 rounds to 178)
    np.testing.assert_array_equal(overlay[10, 20], [255, 0, 0])  # the mask's border: contour
    np.testing.assert_array_equal(overlay[9, 20], [100, 100, 100])  # just outside the mask: untouched
    with pytest.raises(ValueError, match="mask is"):
        overlay_mask(image, mask[:20])


def test_overlay_grid_has_one_row_per_example_of_three_tiles(tmp_path):
    images = [PIL.Image.new("RGB", (30, 20), (100, 100, 100)), PIL.Image.new("RGB", (12, 16), (10, 20, 30))]
    targets = [np.ones((20, 30), bool), np.zeros((16, 12), bool)]
    predictions = [np.zeros((20, 30), bool), np.ones((16, 12), bool)]
    save_overlay_grid(images, targets, predictions, tmp_path / "grid.png", tile=32)
    grid = np.asarray(PIL.Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 32, 3 * 32, 3)
    np.testing.assert_array_equal(grid[16, 16], [100, 100, 100])  # row 0: the image itself
    assert grid[16, 32 + 16, 1] > grid[16, 32 + 16, 0]  # row 0: ground truth tinted green
    assert grid[32 + 16, 64 + 16, 0] > grid[32 + 16, 64 + 16, 1]  # row 1: prediction tinted red
    with pytest.raises(ValueError):
        save_overlay_grid(images, targets[:1], predictions, tmp_path / "bad.png")


def test_write_png_round_trips_and_leaves_no_temporary_file(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(4, 6)
    write_png(array, tmp_path / "mask.png")
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "mask.png")), array)
    assert [path.name for path in tmp_path.iterdir()] == ["mask.png"]


def test_training_curves_plot_every_stage(tmp_path):
    log = tmp_path / "train_log.jsonl"
    records = [
        {"stage": stage, "epoch": 0, "step": step, "loss": 1.0 / step}
        for stage in ("prompt", "surrogate")
        for step in (1, 2, 3)
    ]
    records += [{"stage": "prompt", "epoch": 0, "step": 3, "val_dice": 0.5, "val_iou": 0.4}]
    log.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    plot_training_curves(log, tmp_path / "curves.png")
    width, height = PIL.Image.open(tmp_path / "curves.png").size
    assert width > 0 and height > width / 2  # two stages: two rows of plots


def test_label_maps_are_drawn_a_colour_per_class_with_a_legend(tmp_path):
    id2label = {0: "background", 1: "interior", 2: "boundary"}
    colors = class_colors(id2label)
    assert list(colors) == ["interior", "boundary"] and colors["interior"] != colors["boundary"]
    image = np.full((20, 30, 3), 100, np.uint8)
    label_map = np.zeros((20, 30), np.uint8)
    label_map[2:10, 2:10], label_map[12:18, 12:28] = 1, 2
    overlay = overlay_label_map(image, label_map, list(colors.values()), alpha=1.0)
    np.testing.assert_array_equal(overlay[5, 5], colors["interior"])
    np.testing.assert_array_equal(overlay[15, 20], colors["boundary"])
    np.testing.assert_array_equal(overlay[0, 29], [100, 100, 100])
    with_legend = add_legend(overlay, colors)
    assert with_legend.shape[0] > 20 and with_legend.shape[1:] == (30, 3)
    save_overlay_grid(
        [PIL.Image.fromarray(image)], [label_map], [label_map], tmp_path / "grid.png", tile=32, id2label=id2label
    )
    assert np.asarray(PIL.Image.open(tmp_path / "grid.png")).shape[:2] == (32 + with_legend.shape[0] - 20, 96)
