"""Volume folders for tests: bad DICOM folders made from the real example series (links to its files, slices of
another series), synthetic Decathlon / nnU-Net datasets, and the real NIfTI CT cut into cases."""

import json
import locale
import os
from pathlib import Path

import numpy as np

# The synthetic dataset's classes: label values 3 and 7 (not 1..K), as dataset.json names them.
SYNTHETIC_LABELS = {"background": 0, "kidney": 3, "tumour": 7}
SYNTHETIC_SPACING = (1.0, 1.0, 3.0)  # mm: k, the coarsest, is the slicing axis


def write_decathlon_dataset(
    root: Path, num_cases: int = 5, shape=(12, 10, 6), channel: str = "MRI", labels=SYNTHETIC_LABELS
) -> Path:
    """`root/{dataset.json, imagesTr, labelsTr}` of `num_cases` synthetic cases `case<n>`: intensities 100 + 10 k +
    noise, each case's label volume holding a kidney (value 3) box in slices 1..3 and a tumour (7) in slice 2; the
    other slices are empty. Each case has its own origin, so no two share a grid."""
    import nibabel as nib

    generator = np.random.default_rng(0)
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for number in range(num_cases):
        affine = np.diag([*SYNTHETIC_SPACING, 1.0])
        affine[:3, 3] = (10.0 * number, 0.0, 0.0)
        image = 100.0 + 10.0 * np.arange(shape[2])[None, None, :] + generator.normal(0, 5, shape)
        label = np.zeros(shape, np.uint8)
        label[2:8, 2:7, 1:4] = 3
        label[4:6, 3:5, 2] = 7
        nib.Nifti1Image(image.astype(np.int16), affine).to_filename(root / "imagesTr" / f"case{number}_0000.nii.gz")
        nib.Nifti1Image(label, affine).to_filename(root / "labelsTr" / f"case{number}.nii.gz")
    description = {"channel_names": {"0": channel}, "labels": labels, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(description))
    return root


def write_ct_halves(ct_example: Path, root: Path) -> Path:
    """The real NIfTI CT (122 x 101 x 30 voxels) as a two-case nnU-Net dataset: slices 0..14 `ct_a`, 15..29 `ct_b`,
    each with its label volume and its own affine (nibabel's slicer moves the origin), under the example's
    dataset.json."""
    import nibabel as nib

    source = ct_example / "nifti"
    image = nib.load(source / "imagesTr" / "ct_001_0000.nii.gz")
    labels = nib.load(source / "labelsTr" / "ct_001.nii.gz")
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for case, (start, stop) in {"ct_a": (0, 15), "ct_b": (15, 30)}.items():
        nib.save(image.slicer[:, :, start:stop], root / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(labels.slicer[:, :, start:stop], root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_bytes((source / "dataset.json").read_bytes())
    return root


def linked_series(ct_example: Path, folder: Path, skip: int | None = None) -> list[Path]:
    """`folder` holding links to the example series' files (sorted by name, i.e. by slice), but file `skip`."""
    folder.mkdir()
    files = sorted((ct_example / "dicom" / "series").iterdir())
    for index, path in enumerate(files):
        if index != skip:
            os.symlink(path, folder / path.name)
    return files


def write_slice_of_another_series(source: Path, target: Path, series_uid: str) -> None:
    """One slice of `source` written to `target` as a slice of the series `series_uid` (uncompressed)."""
    import SimpleITK as sitk

    original = sitk.ReadImage(str(source))
    image = sitk.GetImageFromArray(sitk.GetArrayFromImage(original).astype(np.int16))
    image.CopyInformation(original)
    for tag, value in {
        "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage (the example's SOP class UID is anonymised away)
        "0008|0018": series_uid + ".1",
        "0008|0060": "CT",
        "0020|000e": series_uid,
        "0020|0032": original.GetMetaData("0020|0032"),
        "0020|0037": original.GetMetaData("0020|0037"),
    }.items():
        image.SetMetaData(tag, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(target))
    # GDCM's writer sets the process locale to "C", which would turn the test process's text pipes to ASCII.
    saved = locale.setlocale(locale.LC_ALL)
    try:
        writer.Execute(image)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
