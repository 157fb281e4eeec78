"""Rasterisation of MoNuSeg's XML nucleus annotations.

The official MoNuSeg release ships one Aperio-style XML file per tissue image: ``<Region>`` elements, one per
nucleus, each with a ``<Vertices>`` list of ``<Vertex X=".." Y=".."/>`` polygon corners in pixel coordinates.
Polygons are filled with PIL, boundary included, in ``<Region>`` order (a later nucleus overwrites an earlier one
where they overlap).
"""

import os
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image, ImageDraw


def read_monuseg_polygons(xml_path: str | os.PathLike) -> list[list[tuple[float, float]]]:
    """Read the nucleus polygons of a MoNuSeg XML file, in ``<Region>`` order.

    Raises:
        ValueError: the file is not well-formed XML or a vertex has no numeric ``X``/``Y``.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise ValueError(f"Cannot read the MoNuSeg annotation {xml_path}: {error}") from error
    polygons = []
    for region in root.iter("Region"):
        try:
            points = [(float(vertex.get("X")), float(vertex.get("Y"))) for vertex in region.iter("Vertex")]
        except (TypeError, ValueError) as error:
            raise ValueError(f"Bad vertex in {xml_path} (region {region.get('Id')}): {error}") from error
        if points:
            polygons.append(points)
    return polygons


def rasterize_monuseg_xml(
    xml_path: str | os.PathLike, size: tuple[int, int], instance_labels: bool = False
) -> np.ndarray:
    """Rasterise a MoNuSeg XML annotation.

    Args:
        xml_path: the ``.xml`` annotation file.
        size: (width, height) of its image, as PIL reports it.
        instance_labels: number nuclei 1..N in ``<Region>`` order instead of returning a binary mask.

    Returns:
        `np.ndarray` of shape (height, width): bool, or uint16 instance labels (0 = background).
    """
    polygons = read_monuseg_polygons(xml_path)
    # Mode "I" (32-bit) holds any nucleus count; the binary case only ever writes 1.
    canvas = Image.new("I", size, 0)
    draw = ImageDraw.Draw(canvas)
    for label, points in enumerate(polygons, start=1):
        value = label if instance_labels else 1
        if len(points) == 1:
            draw.point(points, fill=value)
        else:
            draw.polygon(points, fill=value, outline=value)
    labels = np.asarray(canvas)
    return labels.astype(np.uint16) if instance_labels else labels > 0
