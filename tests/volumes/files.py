"""Bad DICOM folders made from the real example series (links to its files, slices of another series)."""

import locale
import os
from pathlib import Path

import numpy as np


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
