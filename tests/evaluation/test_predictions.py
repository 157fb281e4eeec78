"""autosam_hf.evaluation.predictions: saved masks and overlays, and file names that never leave their folder."""

from pathlib import Path

import numpy as np
import PIL.Image

from autosam_hf.evaluation.predictions import PredictionWriter, file_part


def test_image_ids_become_relative_paths_inside_the_folder():
    assert file_part("case1/frame_3") == Path("case1/frame_3")
    assert file_part("../../etc/passwd") == Path("_/_/etc/passwd")
    assert file_part("/abs/x") == file_part("//abs/x") == Path("abs/x") and file_part("C:\\x\\y") == Path("C:/x/y")
    assert file_part("") == Path("_")


def test_writer_saves_masks_overlays_and_a_grid_per_mode(tmp_path):
    image = np.zeros((10, 14, 3), np.uint8)
    target, prediction = np.zeros((10, 14), bool), np.zeros((10, 14), bool)
    target[2:6, 2:6], prediction[3:8, 3:9] = True, True
    writer = PredictionWriter(tmp_path, num_overlays=1)
    writer.add("autosam", "case/a", image, target, prediction)
    writer.add("autosam", "b", image, target, prediction)
    writer.close()
    mask = np.asarray(PIL.Image.open(tmp_path / "autosam" / "masks" / "case" / "a.png"))
    np.testing.assert_array_equal(mask, prediction.astype(np.uint8) * 255)
    assert PIL.Image.open(tmp_path / "autosam" / "overlays" / "b.png").size == (14, 10)
    assert (tmp_path / "autosam" / "overlay_grid.png").is_file()
