"""autosam_hf.inference.inputs: image files read upright, folders and frame folders in natural order, video files
frame by frame, the extra named when OpenCV is missing, new kinds of input through `INPUT_KINDS`, and volumes: the
rule that makes a folder a DICOM series, folders of volumes, NIfTI files."""

import sys

import numpy as np
import PIL.Image
import pytest

from autosam_hf.data.sources import natural_sort_key
from autosam_hf.inference import InputImage, InputKind, InputVolume, inputs, open_input, read_image
from autosam_hf.inference.cli import main
from autosam_hf.inference.inputs import is_dicom_series
from autosam_hf.volumes import read_volume

from .conftest import random_images, read_png, write_nifti


def test_an_image_is_read_upright_by_its_exif_orientation_as_the_pipeline_reads_it(tmp_path):
    from transformers.image_utils import load_image

    path = tmp_path / "rotated.jpg"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90° clockwise
    PIL.Image.fromarray(random_images()[0]).save(path, exif=exif)  # stored 30 x 40 (H x W)
    assert read_image(path).shape == (40, 30, 3)
    np.testing.assert_array_equal(read_image(path), np.asarray(load_image(str(path))))


def test_frame_folder_is_read_in_natural_order(model_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in (10, 2, 1):
        PIL.Image.fromarray(np.full((20, 24, 3), 10 * index, np.uint8)).save(frames / f"frame{index}.jpg")
    images, total = open_input(frames)
    assert total == 3 and [image.name for image in images] == ["frame1", "frame2", "frame10"]
    assert sorted(["f10.png", "F9.png", "f1.png"], key=natural_sort_key) == ["f1.png", "F9.png", "f10.png"]
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), str(frames), "--output_dir", str(out), "--no-overlays", "--quiet"]) == 0
    assert sorted(path.name for path in (out / "masks").iterdir()) == ["frame1.png", "frame10.png", "frame2.png"]
    assert not (out / "overlays").exists()


def test_video_file_is_segmented_frame_by_frame(model_dir, tmp_path):
    import cv2  # opencv-python-headless: a dependency of pysodmetrics, so installed with autosam-hf

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (24, 20))
    for value in (0, 120, 240):
        writer.write(np.full((20, 24, 3), value, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), str(video), "--output_dir", str(out), "--quiet"]) == 0
    names = sorted(path.name for path in (out / "masks").iterdir())
    assert names == ["clip_000000.png", "clip_000001.png", "clip_000002.png"]
    assert read_png(out / "masks" / names[0]).shape == (20, 24)


def test_video_without_opencv_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"junk")
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(ValueError, match=r"clip\.mp4.*autosam-hf\[video\]"):
        open_input(tmp_path / "clip.mp4")


def test_a_new_kind_of_input_is_one_more_entry_of_input_kinds(tmp_path, monkeypatch):
    def open_stack(path):  # e.g. a volume: one image per slice
        slices = np.load(path)
        return (InputImage(f"{path.stem}_{index:03d}", image=image) for index, image in enumerate(slices)), len(slices)

    stack = InputKind("stack", open_stack, extensions=(".npy",))
    monkeypatch.setattr(inputs, "INPUT_KINDS", [*inputs.INPUT_KINDS, stack])
    slices = np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3)
    with open(tmp_path / "scan.NPY", "wb") as file:
        np.save(file, slices)
    images, total = open_input(tmp_path / "scan.NPY")  # extensions match ignoring case, as for videos
    assert total == 2
    read = list(images)
    assert [image.name for image in read] == ["scan_000", "scan_001"]
    np.testing.assert_array_equal(read[1].image, slices[1])
    # A file no kind claims is read as an image; when it is not one, the message names every kind's extensions.
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(
        ValueError, match=r"notes\.txt.*\.txt is not one of the video extensions \.mp4.*; stack extensions \.npy"
    ):
        open_input(tmp_path / "notes.txt")


def test_a_folder_is_a_dicom_series_when_it_holds_dcm_files_or_dicom_files_without_suffix(tmp_path):
    def folder(name: str, files: dict[str, bytes]):
        path = tmp_path / name
        path.mkdir()
        for file_name, data in files.items():
            (path / file_name).write_bytes(data)
        return path

    dicom_part10 = bytes(128) + b"DICM" + b"\x02\x00\x00\x00"  # the preamble, then the marker
    assert is_dicom_series(folder("dcm", {"IM1.DCM": b"", "notes.txt": b"x"}))
    assert is_dicom_series(folder("no_suffix", {"IM000001": dicom_part10}))
    # Otherwise a folder of images (or of volumes): suffix-less files that are not DICOM, images, NIfTI files.
    assert not is_dicom_series(folder("not_dicom", {"README": bytes(128) + b"TEXT", "a.png": dicom_part10}))
    assert not is_dicom_series(folder("hidden", {".x.dcm": b""}))  # macOS metadata, as for images
    assert not is_dicom_series(folder("empty", {}))
    assert not is_dicom_series(tmp_path / "dcm" / "IM1.DCM")  # a file is no folder


def test_a_folder_without_images_is_a_folder_of_volumes_in_natural_order(tmp_path):
    folder = tmp_path / "volumes"
    folder.mkdir()
    write_nifti(folder / "case10.nii.gz", seed=1)
    write_nifti(folder / "case2.nii", seed=2)
    (folder / "notes.txt").write_text("not a volume; ignored")
    items, total = open_input(folder)
    read = list(items)
    assert total == 2 and [item.name for item in read] == ["case2", "case10"]
    assert all(isinstance(item, InputVolume) and item.error is None for item in read)
    np.testing.assert_array_equal(read[0].volume.array, read_volume(folder / "case2.nii").array)
    # With images beside them, a folder stays a folder of images, as before volumes were read.
    PIL.Image.fromarray(random_images()[0]).save(folder / "a.png")
    assert [item.name for item in open_input(folder)[0]] == ["a"]


def test_a_nifti_file_is_one_volume_read_at_once(tmp_path):
    path = write_nifti(tmp_path / "ct.NII.GZ")
    items, total = open_input(path)
    (item,) = items
    assert total == 1 and item.name == "ct" and item.volume.shape == (20, 16, 5)
    (tmp_path / "bad.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"bad\.nii\.gz: cannot read as NIfTI"):
        open_input(tmp_path / "bad.nii.gz")  # before the model is loaded
