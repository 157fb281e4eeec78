"""autosam_hf.metrics.instances: AJI on hand-made cases with known answers, instances from predicted label maps, and
count errors."""

import numpy as np
import pytest

from autosam_hf.metrics import InstanceMetrics, aggregated_jaccard_index, count_instances, instances_from_label_map


def instance_map(*boxes, shape=(6, 8)) -> np.ndarray:
    """Instance ids 1, 2, ... filling the given (row slice, column slice) boxes, later boxes on top."""
    instances = np.zeros(shape, np.int32)
    for index, (rows, columns) in enumerate(boxes, start=1):
        instances[rows, columns] = index
    return instances


A = (slice(0, 2), slice(0, 4))  # 8 pixels
B = (slice(3, 5), slice(0, 2))  # 4 pixels
C = (slice(3, 6), slice(4, 8))  # 12 pixels


def test_perfect_prediction_and_relabelled_ids_give_one():
    truth = instance_map(A, B, C)
    assert aggregated_jaccard_index(truth, truth) == 1.0
    assert aggregated_jaccard_index(truth, np.where(truth > 0, 10 - truth, 0)) == 1.0  # ids do not matter
    assert aggregated_jaccard_index(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0  # nothing to find, nothing found


def test_a_missed_nucleus_adds_its_pixels_to_the_union():
    truth, predicted = instance_map(A, B), instance_map(A)
    # C = |A| = 8; U = |A| + |B| (B unmatched) = 12.
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(8 / 12)


def test_a_spurious_prediction_adds_its_pixels_to_the_union():
    truth, predicted = instance_map(A), instance_map(A, C)
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(8 / (8 + 12))


def test_merged_nuclei_count_the_merged_prediction_once_per_ground_truth():
    # Ground truth: two nuclei side by side (4 px each); prediction: one blob over both (8 px).
    left, right = (slice(0, 2), slice(0, 2)), (slice(0, 2), slice(2, 4))
    truth, predicted = instance_map(left, right), instance_map(A)
    # Each truth matches the blob (IoU 4/8): C = 4 + 4, U = 8 + 8 (the blob's union, once per truth).
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(8 / 16)


def test_a_split_nucleus_matches_its_best_part_and_the_other_part_joins_the_union():
    left, right = (slice(0, 2), slice(0, 1)), (slice(0, 2), slice(1, 4))  # 2 px and 6 px
    truth, predicted = instance_map(A), instance_map(left, right)
    # Best IoU: the right part (6/8); C = 6, U = 8 + 2 (the left part, unused).
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(6 / 10)


def test_partial_overlap():
    truth = instance_map(A)
    predicted = instance_map((slice(1, 3), slice(0, 4)))  # 4 px shared, 4 px beyond
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(4 / 12)
    assert aggregated_jaccard_index(truth, np.zeros_like(truth)) == 0.0


def test_instances_from_a_label_map_grow_back_into_the_boundary():
    label_map = np.array(
        [
            [2, 2, 2, 2, 2, 2, 0, 0],
            [2, 1, 2, 2, 1, 2, 0, 2],
            [2, 2, 2, 2, 2, 2, 0, 2],
        ]
    )
    interiors = instances_from_label_map(label_map, grow=False)
    assert count_instances(interiors) == 2 and interiors[0, 0] == 0
    grown = instances_from_label_map(label_map)
    # Each interior takes its nearer boundary pixels; a boundary-only piece (right) is an instance of its own.
    np.testing.assert_array_equal(grown[:, :3], np.full((3, 3), grown[1, 1]))
    np.testing.assert_array_equal(grown[:, 3:6], np.full((3, 3), grown[1, 4]))
    assert len({grown[1, 1], grown[1, 4], grown[1, 7]}) == 3 and count_instances(grown) == 3


def test_a_boundary_pixel_nearer_another_pieces_interior_stays_with_its_own_piece():
    # Piece 1: an interior column and a wide boundary; a background gap; piece 2: interior nearer to its right edge.
    row = [1, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 1, 1, 1]
    grown = instances_from_label_map(np.array([row] * 5))
    assert count_instances(grown) == 2
    np.testing.assert_array_equal(grown[:, :9], np.full((5, 9), grown[0, 0]))
    np.testing.assert_array_equal(grown[:, 10:], np.full((5, 4), grown[0, 10]))


def test_instance_metrics_average_aji_and_count_errors_over_images():
    metrics = InstanceMetrics()
    first = metrics.update(instance_map(A), instance_map(A, B))  # one of two found
    assert first["count_error"] == 1 and first["count_relative_error"] == 0.5
    metrics.update(instance_map(A, B, C), instance_map(A, B, C))
    result = metrics.compute()
    assert result["aji"] == pytest.approx((8 / 12 + 1) / 2)
    assert result["count_error"] == 0.5 and result["true_instances"] == 2.5
    with pytest.raises(ValueError, match="No image"):
        InstanceMetrics().compute()
