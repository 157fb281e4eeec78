"""autosam_hf.evaluation.batches: evaluation order, decoded rows and processed batches."""

import numpy as np
from conftest import make_tiny_processor

from autosam_hf.evaluation.batches import evaluation_loader, evaluation_order
from evaluation.sample_data import make_dataset


def test_video_rows_are_ordered_by_case_then_frame_and_images_stay_as_stored():
    rows = [{"case": case, "frame": frame} for case, frame in [("b", 1), ("a", 2), ("b", 0), ("a", 0), ("a", 1)]]
    # Cases in the order they first appear (b, then a), frames in time order within each.
    assert evaluation_order(rows, is_video=True) == [2, 0, 3, 4, 1]
    assert evaluation_order(rows, is_video=False) == [0, 1, 2, 3, 4]


def test_batches_hold_decoded_rows_and_the_processors_outputs():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)]
    masks = [np.full((20, 30), 255, np.uint8), np.zeros((12, 12), np.uint8)]
    dataset, processor = make_dataset(images, masks), make_tiny_processor()
    loader = evaluation_loader(dataset, processor, is_video=False, batch_size=2, num_workers=0, with_labels=True)
    (batch,) = list(loader)
    assert [row["id"] for row in batch["rows"]] == ["0", "1"]
    np.testing.assert_array_equal(batch["rows"][0]["image"], images[0])
    assert batch["rows"][0]["target"].dtype == np.uint8 and batch["rows"][0]["target"].all()  # 0/255 read as 0/1
    assert batch["original_sizes"].tolist() == [[20, 30], [12, 12]]
    assert batch["pixel_values"].shape == (2, 3, 24, 24) and batch["labels"].shape == (2, 48, 48)
