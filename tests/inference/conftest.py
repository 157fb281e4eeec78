"""The inference tests' shared model and images: a saved tiny AutoSAM with decisive masks (built once for the
package), images of three sizes, a folder of them with files that cannot be read, small synthetic volumes, and the
real CT example (../shared/data/ct_example)."""

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_sam_config
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.hub import load_model_and_processor

SIZES = [(30, 40), (17, 23), (40, 26)]  # (height, width)


@pytest.fixture(scope="package")
def model_dir(tmp_path_factory):
    """A saved tiny AutoSAM + processor whose mask logits are scaled far from the threshold (decisive masks)."""
    folder = tmp_path_factory.mktemp("predict_model")
    torch.manual_seed(0)
    sam = SamModel(make_tiny_sam_config())
    model = AutoSamForSegmentation.from_sam(sam, prompt_input_size=32)
    with torch.no_grad():
        for mlp in model.sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e3)
            mlp.proj_out.bias.mul_(1e3)
        model.surrogate_decoder.layers[-1].weight.mul_(1e2)
    model.save_pretrained(folder)
    AutoSamImageProcessor.from_sam_config(model.config.sam_config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="package")
def loaded(model_dir):
    return load_model_and_processor(model_dir)


def random_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for height, width in SIZES]


@pytest.fixture
def image_folder(tmp_path):
    """Three images (RGB PNG, grey JPEG, RGBA PNG) and one corrupt file."""
    folder = tmp_path / "images"
    folder.mkdir()
    rgb, grey, rgba = random_images()
    PIL.Image.fromarray(rgb).save(folder / "a.png")
    PIL.Image.fromarray(grey[..., 0]).save(folder / "b.jpg")
    PIL.Image.fromarray(np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])).save(folder / "c.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image; ignored")
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: not read, as training does not
    return folder


@pytest.fixture(scope="session")
def ct_example(shared_data_dir):
    """The real CT example: `nifti/imagesTr/ct_001_0000.nii.gz` (122 x 101 x 30) and `dicom/series/` (512 x 512 x
    20) with `dicom/labels.nii.gz` on the series' grid."""
    return shared_data_dir / "ct_example"


def write_nifti(path, shape=(20, 16, 5), spacing=(1.0, 1.2, 3.0), seed=0):
    """A small random int16 "CT" (-1000..1000 HU) as NIfTI, LPS-oriented with an origin away from 0, so that a
    header or affine that is not carried over shows."""
    import nibabel as nib

    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (40.0, 25.0, -300.0)
    array = np.random.default_rng(seed).integers(-1000, 1000, size=shape, dtype=np.int16)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def reference_masks(loaded, images, mode="autosam") -> list[np.ndarray]:
    """What the model itself predicts: logits > mask_threshold at the original size, image by image."""
    model, processor = loaded
    masks = []
    for image in images:
        inputs = processor(image, return_tensors="pt")
        with torch.no_grad():
            logits = model(pixel_values=inputs["pixel_values"], mode=mode).logits
        masks.append((processor.post_process_logits(logits, inputs["original_sizes"])[0] > 0).numpy())
    return masks


def read_png(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image)
