"""The demo's operations (`autosam_hf.demo.session`): its masks are `autosam-predict`'s for the same image and
clicks, clicks are nested as the predictor takes them, a volume's label volume is `predict_volume`'s with the clicked
slices replaced, and bad clicks are named."""

import nibabel as nib
import numpy as np
import PIL.Image
import pytest

from autosam_hf.demo import Clicks, DemoSession, mark_clicks
from autosam_hf.demo.app import status_line
from autosam_hf.demo.cli import build_parser, load_demo
from autosam_hf.demo.session import NEGATIVE_COLOR, POSITIVE_COLOR
from autosam_hf.inference.predictor import iter_predictions, predict_volume
from autosam_hf.volumes import read_volume

from .conftest import predicted_mask


@pytest.fixture(scope="module")
def demo(model_dir, tmp_path_factory):
    args = build_parser().parse_args(["--model", str(model_dir), "--device", "cpu", "--dtype", "float32"])
    return load_demo(args, root=tmp_path_factory.mktemp("sessions"))


def test_masks_are_what_autosam_predict_writes_before_and_after_a_click(demo, model_dir, kvasir_image, tmp_path):
    session = demo.open_image(demo.new_session(), kvasir_image, "autosam")
    automatic = np.asarray(PIL.Image.open(demo.download(session)))
    assert demo.download(session).name == f"{kvasir_image.stem}.png"
    np.testing.assert_array_equal(automatic, predicted_mask(model_dir, kvasir_image, tmp_path / "auto"))
    session = demo.add_click(session, 176, 150, "positive", "autosam")
    session = demo.add_click(session, 40, 300, "negative", "autosam")
    clicked = np.asarray(PIL.Image.open(demo.download(session)))
    expected = predicted_mask(
        model_dir, kvasir_image, tmp_path / "clicks", "--points", "176,150;40,300", "--point_labels", "1,0"
    )
    np.testing.assert_array_equal(clicked, expected)
    assert (clicked != automatic).any()
    assert status_line(demo, session, "autosam") == f"{kvasir_image.stem}: clicks +176,150 -40,300"
    session = demo.reset_clicks(session, "autosam")
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(demo.download(session))), automatic)


def test_two_box_corners_make_the_box_autosam_predict_takes(demo, model_dir, kvasir_image, tmp_path):
    session = demo.open_image(demo.new_session(), kvasir_image, "autosam")
    session = demo.add_click(session, 300, 250, "box corner", "autosam")
    assert session.current_clicks.corner == (300, 250) and session.current_clicks.box is None
    assert "opposite corner" in status_line(demo, session, "autosam")
    session = demo.add_click(session, 100, 80, "box corner", "autosam")
    assert session.current_clicks.box == [100, 80, 300, 250] and session.current_clicks.corner is None
    expected = predicted_mask(model_dir, kvasir_image, tmp_path, "--box", "100,80,300,250")
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(demo.download(session))), expected)


def test_the_surrogate_keeps_the_clicks_for_autosam(demo, kvasir_image):
    session = demo.open_image(demo.new_session(), kvasir_image, "surrogate")
    surrogate = session.label_map.copy()
    session = demo.add_click(session, 176, 150, "positive", "surrogate")
    np.testing.assert_array_equal(session.label_map, surrogate)
    assert "takes no clicks" in status_line(demo, session, "surrogate")
    session = demo.change_mode(session, "autosam")
    prompts = {"input_points": [[[176.0, 150.0]]], "input_labels": [[1]]}
    ((_, expected),) = iter_predictions(demo.model, demo.processor, [(0, session.image)], "autosam", **prompts)
    np.testing.assert_array_equal(session.label_map, expected.label_map)
    assert demo.modes == ["autosam", "surrogate"]


def test_clicks_are_nested_per_class_as_the_processor_takes_them():
    clicks = Clicks(points=[(1, 10.0, 20.0, 1), (2, 30.0, 40.0, 0), (1, 5.0, 6.0, 0)])
    assert clicks.prompts(2) == {
        "input_points": [[[[10.0, 20.0], [5.0, 6.0]], [[30.0, 40.0]]]],
        "input_labels": [[[1, 0], [0]]],
    }
    binary = Clicks(points=[(1, 10.0, 20.0, 1)], box=[1.0, 2.0, 3.0, 4.0])
    assert binary.prompts(1) == {
        "input_points": [[[10.0, 20.0]]],
        "input_labels": [[1]],
        "input_boxes": [[1.0, 2.0, 3.0, 4.0]],
    }
    assert Clicks().prompts(1) == {}


def test_markers_are_drawn_where_the_user_clicked():
    overlay = np.zeros((100, 100, 3), np.uint8)
    marked = mark_clicks(overlay, Clicks(points=[(1, 20.0, 30.0, 1), (1, 70.0, 60.0, 0)]))
    assert tuple(marked[30, 20]) == POSITIVE_COLOR and tuple(marked[60, 70]) == NEGATIVE_COLOR
    assert not marked[90:, :10].any() and not overlay.any()


def test_bad_clicks_are_named(demo, kvasir_image, tmp_path):
    with pytest.raises(ValueError, match="upload an image or a volume first"):
        demo.add_click(demo.new_session(), 1, 1, "positive", "autosam")
    session = demo.open_image(demo.new_session(), kvasir_image, "autosam")
    with pytest.raises(ValueError, match="click kind must be one of"):
        demo.add_click(session, 1, 1, "sideways", "autosam")
    with pytest.raises(ValueError, match="one NIfTI file .* got a.txt"):
        demo.open_volume(session, [tmp_path / "a.txt", tmp_path / "b.nii.gz"], "autosam")


def test_a_volume_downloads_predict_volumes_labels_with_the_clicked_slice_corrected(demo, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "ct.nii.gz"
    nib.Nifti1Image(rng.integers(-200, 300, (20, 18, 5)).astype(np.int16), np.diag([1.0, 1.0, 3.0, 1.0])).to_filename(
        path
    )
    session = demo.open_volume(demo.new_session(), [path], "autosam")
    assert (session.index, session.image.shape, len(session.slices)) == (2, (18, 20, 3), 5)
    automatic = predict_volume(demo.model, demo.processor, read_volume(path))
    download = demo.download(session)
    assert download.name == "ct.nii.gz"
    np.testing.assert_array_equal(np.asarray(nib.load(download).dataobj), automatic)
    session = demo.show_slice(session, 1, "autosam")
    session = demo.add_click(session, 5, 9, "positive", "autosam")
    prompts = {"input_points": [[[5.0, 9.0]]], "input_labels": [[1]]}
    ((_, clicked),) = iter_predictions(demo.model, demo.processor, [(0, session.slices[1].image)], **prompts)
    labels = np.asarray(nib.load(demo.download(session)).dataobj)
    np.testing.assert_array_equal(labels[:, :, [0, 2, 3, 4]], automatic[:, :, [0, 2, 3, 4]])
    np.testing.assert_array_equal(labels[:, ::-1, 1].T, clicked.label_map)  # display orientation: rows = j reversed
    assert status_line(demo, session, "autosam") == "ct, slice 1: clicks +5,9"
    assert status_line(demo, DemoSession(folder=tmp_path), "autosam") == "Upload an image or a volume."
