"""Small image/mask folders written for the data tests (pairs, GlaS, MoNuSeg XML, SUN-SEG layouts)."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size=(12, 8), seed=0) -> Path:
    """Write a random RGB image of size (width, height); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, size=(12, 8), values=(0, 255)) -> np.ndarray:
    """Write a mask whose left half is background and right half foreground; return the expected 0/1 mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = np.zeros((size[1], size[0]), dtype=np.uint8)
    expected[:, size[0] // 2 :] = 1
    Image.fromarray(np.where(expected == 1, values[1], values[0]).astype(np.uint8)).save(path)
    return expected


def make_pair_folder(root: Path, stems=("1", "2", "10"), size=(12, 8)) -> Path:
    for seed, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}.jpg", size, seed)
        write_mask(root / "masks" / f"{stem}.png", size)
    return root


def mask_array(example) -> np.ndarray:
    return np.array(example["mask"])


def write_glas_pair(folder: Path, stem: str, size=(16, 10)) -> np.ndarray:
    write_image(folder / f"{stem}.bmp", size)
    labels = np.zeros((size[1], size[0]), dtype=np.uint8)
    labels[1:4, 1:5] = 1  # gland instance ids 1..3: all foreground despite being < 128
    labels[5:9, 8:15] = 2
    labels[6, 2] = 3
    Image.fromarray(labels).save(folder / f"{stem}_anno.bmp")
    return (labels > 0).astype(np.uint8)


MONUSEG_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Annotations MicronsPerPixel="0.252">
  <Annotation Id="1">
    <Regions>
      <Region Id="1"><Vertices>
        <Vertex X="2" Y="2" Z="0"/><Vertex X="5" Y="2" Z="0"/><Vertex X="5" Y="5" Z="0"/><Vertex X="2" Y="5" Z="0"/>
      </Vertices></Region>
      <Region Id="2"><Vertices>
        <Vertex X="8.4" Y="1.2" Z="0"/><Vertex X="10.6" Y="1.2" Z="0"/><Vertex X="10.6" Y="3.4" Z="0"/>
      </Vertices></Region>
    </Regions>
  </Annotation>
</Annotations>
"""


def make_sunseg_split(root: Path, frames_per_case: dict[str, list[str]]) -> Path:
    for case, frames in frames_per_case.items():
        for seed, frame in enumerate(frames):
            write_image(root / "Frame" / case / f"{frame}.jpg", seed=seed)
            write_mask(root / "GT" / case / f"{frame}.png")
    return root
