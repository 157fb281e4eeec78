"""autosam_hf.volumes.montage: slices with foreground in a grid, each class in its colour of
autosam_hf.visualization, in the slices' physical aspect, with a legend; written as a PNG."""

import numpy as np
import PIL.Image

from autosam_hf.visualization import CLASS_COLORS
from autosam_hf.volumes import Volume, volume_montage, write_montage


def test_the_montage_shows_the_slices_with_foreground_in_their_class_colours(tmp_path):
    array = np.zeros((20, 10, 8), dtype=np.int16)  # 1 x 2 mm pixels: tiles twice as wide as high in voxels
    labels = np.zeros(array.shape, dtype=np.uint8)
    labels[2:12, 2:8, 3:7] = 2
    labels[14:18, 4:6, 5] = 5
    volume = Volume(array, np.diag([1.0, 2.0, 3.0, 1.0]), path="v.nii.gz")
    id2label = {i: f"class {i}" for i in range(8)}
    montage = volume_montage(volume, labels, axis=2, window="abdomen", id2label=id2label, tile=40)
    # Four slices with foreground (k = 3..6) in a 2 x 2 grid of 40 x 40 tiles (20 mm x 20 mm), then the legend.
    assert montage.shape[:2] == (80 + 2 * 14 + 4, 80)
    colours = {tuple(pixel) for pixel in montage[:80].reshape(-1, 3)}
    assert CLASS_COLORS[1] in colours and CLASS_COLORS[4] in colours  # contours of 2 and 5
    assert CLASS_COLORS[0] not in colours  # class 1 is absent
    write_montage(tmp_path / "montage.png", volume, labels, axis=2, window="abdomen", id2label=id2label, tile=40)
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "montage.png")), montage)


def test_without_labels_the_montage_is_evenly_spaced_slices(nifti_ct):
    montage = volume_montage(nifti_ct, max_slices=5, tile=32)
    # 3 columns x 2 rows of 32 x 26 pixel tiles (366 x 303 mm); the sixth is black.
    assert montage.shape == (2 * 26, 3 * 32, 3)
    assert not montage[26:, 64:].any() and montage[26:, 32:64].any()
