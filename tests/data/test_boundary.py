"""autosam_hf.data.boundary and the `monuseg_boundary` preset: the {background, interior, boundary} label maps derived
from instance masks (each nucleus's own ring, so touching nuclei are separated) and from binary masks (the ring of
each connected component), read by the loaders with the instance ids kept for the instance metrics."""

import numpy as np
import pytest
from PIL import Image

from autosam_hf.data import (
    BOUNDARY_ID2LABEL,
    MaskClasses,
    boundary_label_map,
    get_preset,
    instances_from_mask,
    load_image_mask_folder,
    load_preset_dataset,
)
from autosam_hf.metrics import aggregated_jaccard_index, instances_from_label_map

from .files import write_image

# Two touching nuclei (ids 1 and 2, 6×4 each, side by side) and one alone (id 7, 2×3, touching 2 diagonally only and
# the tile's bottom and right edges), on a 9×12 tile.
INSTANCES = np.zeros((9, 12), np.uint16)
INSTANCES[1:7, 1:5] = 1
INSTANCES[1:7, 5:9] = 2
INSTANCES[7:9, 9:12] = 7


def test_ring_of_each_instance_separates_touching_nuclei():
    label_map = boundary_label_map(INSTANCES.astype(np.int32), width=1)
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0],
            [0, 2, 1, 1, 2, 2, 1, 1, 2, 0, 0, 0],
            [0, 2, 1, 1, 2, 2, 1, 1, 2, 0, 0, 0],
            [0, 2, 1, 1, 2, 2, 1, 1, 2, 0, 0, 0],
            [0, 2, 1, 1, 2, 2, 1, 1, 2, 0, 0, 0],
            [0, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1],  # the tile's edges are no boundary
        ]
    )
    np.testing.assert_array_equal(label_map, expected)
    # Removing the ring splits the touching pair: three instances again, each grown back to its full extent.
    recovered = instances_from_label_map(label_map)
    assert recovered.max() == 3 and aggregated_jaccard_index(INSTANCES, recovered) == 1.0


def test_ring_width_and_binary_masks_give_one_instance_per_component():
    wide = boundary_label_map(INSTANCES.astype(np.int32), width=2)
    assert (wide[1:7, 1:9] == 2).all()  # 4-pixel-wide nuclei are all ring at width 2
    binary = Image.fromarray((INSTANCES > 0).astype(np.uint8) * 255)
    components = instances_from_mask(binary)
    assert components.max() == 2  # the touching pair is one component; 7 (diagonal) another
    label_map = boundary_label_map(components, width=1)
    assert (label_map[2:6, 4:6] == 1).all()  # no ring between the pair: a binary mask does not separate them
    with pytest.raises(ValueError, match="width must be >= 1"):
        boundary_label_map(components, width=0)


def test_sixteen_bit_masks_are_instance_ids_and_eight_bit_ones_binary():
    assert np.array_equal(instances_from_mask(Image.fromarray(INSTANCES)), INSTANCES)
    glands = Image.fromarray(INSTANCES.astype(np.uint8))  # 8-bit ids: instance ids only when said so
    assert np.array_equal(instances_from_mask(glands, instance_labels=True), INSTANCES)


def write_monuseg_like(root, split, instances_dir: bool):
    """`<root>/<split>/{images,masks[,masks_instance]}` with one tile of `INSTANCES`."""
    write_image(root / split / "images" / "tile.png", size=(12, 9))
    (root / split / "masks").mkdir(parents=True)
    Image.fromarray((INSTANCES > 0).astype(np.uint8) * 255).save(root / split / "masks" / "tile.png")
    if instances_dir:
        (root / split / "masks_instance").mkdir()
        Image.fromarray(INSTANCES).save(root / split / "masks_instance" / "tile.png")


def test_monuseg_boundary_preset_reads_instances_on_test_and_components_on_train(tmp_path):
    write_monuseg_like(tmp_path, "train", instances_dir=False)
    write_monuseg_like(tmp_path, "test", instances_dir=True)
    preset = get_preset("monuseg_boundary")
    assert dict(preset.id2label) == BOUNDARY_ID2LABEL and preset.boundary_width == 2
    classes = MaskClasses.boundary(1)
    train = load_preset_dataset("monuseg_boundary", "train", tmp_path, classes=classes)[0]
    test = load_preset_dataset("monuseg_boundary", "test", tmp_path, classes=classes)[0]
    np.testing.assert_array_equal(np.asarray(test["mask"]), boundary_label_map(INSTANCES.astype(np.int32), 1))
    np.testing.assert_array_equal(np.asarray(test["instances"]), INSTANCES)
    assert np.asarray(train["instances"]).max() == 2 and (np.asarray(train["mask"])[2:6, 4:6] == 1).all()
    default = load_preset_dataset("monuseg_boundary", "test", tmp_path)[0]  # the preset's ring: 2 pixels
    np.testing.assert_array_equal(np.asarray(default["mask"]), boundary_label_map(INSTANCES.astype(np.int32), 2))
    with pytest.raises(ValueError, match="has 3 labels, not 2"):
        preset.mask_classes(2)
    with pytest.raises(ValueError, match="derives no boundary classes"):
        get_preset("monuseg").mask_classes(boundary_width=3)


def test_label_map_folders_keep_class_ids_and_name_a_file_with_a_value_above_k(tmp_path):
    write_image(tmp_path / "images" / "a.png", size=(6, 4))
    write_image(tmp_path / "images" / "b.png", size=(6, 4))
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.array([[0, 1, 2, 0, 0, 0]] * 4, np.uint8)).save(tmp_path / "masks" / "a.png")
    Image.fromarray(np.array([[0, 3, 0, 0, 0, 0]] * 4, np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png: value 3 is not a class id of this 3-label model"):
        load_image_mask_folder(tmp_path, classes=MaskClasses(3))
    dataset = load_image_mask_folder(tmp_path, classes=MaskClasses(4))
    np.testing.assert_array_equal(np.asarray(dataset[0]["mask"])[0], [0, 1, 2, 0, 0, 0])


@pytest.mark.slow
def test_real_monuseg_test_split_separates_its_nuclei(shared_data_dir):
    dataset = load_preset_dataset("monuseg_boundary", "test", shared_data_dir / "monuseg")
    assert len(dataset) == 14 and dataset.column_names == ["id", "image", "mask", "instances"]
    for row in (0, 13):
        example = dataset[row]
        instances, label_map = np.asarray(example["instances"]), np.asarray(example["mask"])
        assert 249 <= len(np.unique(instances)) - 1 <= 818  # the README's nuclei per image
        np.testing.assert_array_equal(label_map > 0, instances > 0)
        assert set(np.unique(label_map)) == {0, 1, 2}
        # The interior's connected components, grown back, are close to the true nuclei (touching ones apart).
        assert aggregated_jaccard_index(instances, instances_from_label_map(label_map)) > 0.8
