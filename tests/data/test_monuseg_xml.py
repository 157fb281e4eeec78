"""autosam_hf.data.monuseg_xml: rasterising MoNuSeg's XML polygons."""

import numpy as np

from autosam_hf.data import (
    rasterize_monuseg_xml,
)
from data.files import MONUSEG_XML


def test_monuseg_xml_rasterisation_includes_the_boundary(tmp_path):
    xml_path = tmp_path / "tile.xml"
    xml_path.write_text(MONUSEG_XML)
    labels = rasterize_monuseg_xml(xml_path, size=(12, 8), instance_labels=True)
    assert labels.shape == (8, 12) and labels.dtype == np.uint16
    square = np.zeros((8, 12), dtype=bool)
    square[2:6, 2:6] = True  # vertices 2..5 inclusive
    np.testing.assert_array_equal(labels == 1, square)
    assert (labels == 2).sum() > 0 and not ((labels == 2) & square).any()
    np.testing.assert_array_equal(rasterize_monuseg_xml(xml_path, size=(12, 8)), labels > 0)
