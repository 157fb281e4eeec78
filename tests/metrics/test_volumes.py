"""autosam_hf.metrics.volumes: 3D Dice, HD95 and NSD in mm against closed forms on shifted cubes (anisotropic
voxels), the empty-class rules, and MONAI's own one-hot computation on the real label volume."""

import sys

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

from autosam_hf.metrics.volumes import class_metrics, volume_metrics
from autosam_hf.volumes import read_volume

SIDE, SHIFT = 10, 2
SPACING = (2.0, 0.5, 1.0)  # mm along i, j, k


def cube(offset=(0, 0, 0), shape=(20, 20, 20)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    start = np.array([5, 5, 5]) + offset
    mask[tuple(slice(s, s + SIDE) for s in start)] = True
    return mask


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_cube_shifted_by_k_voxels(axis):
    offset = np.zeros(3, dtype=int)
    offset[axis] = SHIFT
    reference, prediction = cube(), cube(offset)
    shift_mm = SHIFT * SPACING[axis]
    exact = class_metrics(prediction, reference, SPACING, nsd_tolerance_mm=shift_mm)
    assert exact["dice"] == pytest.approx((SIDE - SHIFT) / SIDE)  # overlap 8 x 10 x 10 of 10 x 10 x 10
    # Every surface voxel is within the shift of the other surface, and a face's worth (> 5%) exactly at it.
    assert exact["hd95"] == pytest.approx(shift_mm)
    assert exact["nsd"] == pytest.approx(1.0)
    # Below the smallest voxel size, only the surface voxels both cubes share count: 4 (side - 1) per slice of
    # the overlap, of side^3 - (side - 2)^3 surface voxels per cube.
    strict = class_metrics(prediction, reference, SPACING, nsd_tolerance_mm=0.25)
    assert strict["nsd"] == pytest.approx(4 * (SIDE - 1) * (SIDE - SHIFT) / (SIDE**3 - (SIDE - 2) ** 3))
    assert strict["hd95"] == exact["hd95"]


def test_identical_masks_and_the_empty_class_rules():
    assert class_metrics(cube(), cube(), SPACING, 1.0) == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}
    empty = np.zeros((20, 20, 20), dtype=bool)
    assert class_metrics(empty, empty, SPACING, 1.0) == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}
    missed = {"dice": 0.0, "hd95": float("inf"), "nsd": 0.0}
    assert class_metrics(empty, cube(), SPACING, 1.0) == missed == class_metrics(cube(), empty, SPACING, 1.0)


def test_volume_metrics_scores_every_class_found_or_the_classes_asked():
    reference = cube().astype(np.uint8) * 2
    prediction = cube((SHIFT, 0, 0)).astype(np.uint8) * 2
    prediction[0, 0, 0] = 3  # a class absent from the reference
    scores = volume_metrics(prediction, reference, SPACING, nsd_tolerance_mm={2: 4.0, 3: 1.0})
    assert list(scores) == [2, 3]
    assert scores[2] == class_metrics(prediction == 2, reference == 2, SPACING, 4.0)
    assert scores[3] == {"dice": 0.0, "hd95": float("inf"), "nsd": 0.0}
    assert volume_metrics(prediction, reference, SPACING, labels=[0, 1])[1] == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}
    with pytest.raises(ValueError, match=r"nsd_tolerance_mm has no tolerance for classes \[3\]"):
        volume_metrics(prediction, reference, SPACING, nsd_tolerance_mm={2: 1.0})
    with pytest.raises(ValueError, match="one \\(I, J, K\\) shape, got \\(20, 20, 20\\) and \\(20, 20\\)"):
        volume_metrics(prediction, reference[0], SPACING)
    with pytest.raises(ValueError, match="spacing must be three positive voxel sizes"):
        volume_metrics(prediction, reference, (1.0, 0.0, 1.0))


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI's own call, made directly
def test_on_the_real_label_volume_shifted_by_one_voxel_the_scores_are_monais(shared_data_dir):
    nifti_labels = read_volume(shared_data_dir / "ct_example" / "nifti" / "labelsTr" / "ct_001.nii.gz")
    reference = nifti_labels.array
    prediction = np.zeros_like(reference)
    prediction[1:] = reference[:-1]  # one voxel (3 mm) along i
    spacing = nifti_labels.spacing
    # Spleen, liver, vertebra L1, the spinal cord and a rib: large to small organs.
    classes = [1, 5, 31, 79, 101]
    assert set(classes) <= set(np.unique(reference).tolist())
    scores = volume_metrics(prediction, reference, spacing, labels=classes, nsd_tolerance_mm=2.0)
    one_hot = [
        torch.from_numpy(np.stack([volume == c for c in [0, *classes]]))[None] for volume in (prediction, reference)
    ]
    dice = compute_dice(*one_hot, include_background=False)[0]
    hd95 = compute_hausdorff_distance(*one_hot, include_background=False, percentile=95, spacing=list(spacing))[0]
    nsd = compute_surface_dice(*one_hot, class_thresholds=[2.0] * len(classes), spacing=list(spacing))[0]
    for index, c in enumerate(classes):
        assert scores[c]["dice"] == pytest.approx(dice[index].item())
        assert scores[c]["hd95"] == pytest.approx(hd95[index].item())
        assert scores[c]["nsd"] == pytest.approx(nsd[index].item())
    corner = (prediction[:40, :40], reference[:40, :40])
    found = set(np.unique(corner[0]).tolist()) | set(np.unique(corner[1]).tolist())
    assert list(volume_metrics(*corner, spacing)) == sorted(found - {0})  # by default, every class found
    # Independently: Dice from voxel counts, and HD95 of a one-voxel shift is one voxel (3 mm) for big organs.
    liver = (prediction == 5, reference == 5)
    assert scores[5]["dice"] == pytest.approx(2 * (liver[0] & liver[1]).sum() / (liver[0].sum() + liver[1].sum()))
    assert scores[5]["hd95"] == pytest.approx(3.0)


def test_without_monai_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "monai.metrics", None)  # what an uninstalled package looks like to import
    with pytest.raises(ImportError, match=r"^3D metrics need the package 'monai': pip install 'autosam-hf\[volumes\]'"):
        class_metrics(cube(), cube(), SPACING, 1.0)
