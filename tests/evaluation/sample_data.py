"""Datasets and folders written for the evaluation tests: in-memory image datasets, a SUN-SEG video split, and a
data root of links to the real polyp sets with one set missing."""

import datasets
import numpy as np
import PIL.Image

from autosam_hf.data import IMAGE_FEATURES


def make_dataset(images, masks, ids=None) -> datasets.Dataset:
    """A `datasets.Dataset` with this package's columns (id, image, mask 0/1) from (H, W, 3) images and masks."""
    ids = ids or [str(index) for index in range(len(images))]
    return datasets.Dataset.from_dict(
        {
            "id": ids,
            "image": [PIL.Image.fromarray(image) for image in images],
            "mask": [PIL.Image.fromarray(mask.astype(np.uint8)) for mask in masks],
        },
        features=IMAGE_FEATURES,
    )


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


def polyp_root_without_clinicdb(shared_data_dir, tmp_path):
    """A data root holding three of the four polyp benchmark sets (links to the real ones), ClinicDB missing."""
    root = tmp_path / "data_root"
    root.mkdir()
    for name in ("kvasir", "cvc_colondb", "etis_laribpolypdb"):
        (root / name).symlink_to(shared_data_dir / name, target_is_directory=True)
    return root
