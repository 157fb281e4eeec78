"""What the browser demo does, without the browser: one user's image (or CT/MRI volume and the slice shown), their
clicks and box, the prediction and the files offered for download.

Every prediction goes through `autosam_hf.inference.predictor` (`iter_predictions` for an image or a slice with
its clicks, `predict_volume` for a whole volume), and masks and overlays are drawn by
`autosam_hf.visualization.prediction_pictures`: the mask PNG offered is the one `autosam-predict` writes for the
same image and clicks (`--points`, `--point_labels`, `--box`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from ..inference.inputs import read_image
from ..inference.predictor import iter_predictions, predict_volume
from ..inference.protocol import SegmentationModel
from ..model import AutoSamImageProcessor
from ..model.configuration_autosam import canonical_mode
from ..visualization import prediction_pictures, write_png
from ..volumes.io import Volume, nifti_stem, read_volume, write_label_volume
from ..volumes.slice_dataset import VolumeInput
from ..volumes.slices import slice_axis, stack_label_slices, to_display, volume_slices

CLICK_KINDS = ("positive", "negative", "box corner")
# Marker colours: the mask is red with a yellow contour (`visualization`); clicks must stand out against both.
POSITIVE_COLOR, NEGATIVE_COLOR, BOX_COLOR = (0, 230, 0), (0, 160, 255), (255, 0, 255)


@dataclass
class Clicks:
    """The prompts on one image (or slice): points `(class, x, y, label)` in the image's pixel coordinates (label
    1 positive, 0 negative; class 1..K), a box `[x0, y0, x1, y1]` and the first corner of a box being drawn."""

    points: list[tuple[int, float, float, int]] = field(default_factory=list)
    box: list[float] | None = None
    corner: tuple[float, float] | None = None

    def prompts(self, num_classes: int) -> dict:
        """`iter_predictions`' prompt arguments for this one image (empty without prompts): for a binary model
        the point list itself, else one list per class (a class without clicks is padded)."""
        prompts = {}
        if self.points:
            per_class = [[p for p in self.points if p[0] == k] for k in range(1, num_classes + 1)]
            points = [[[x, y] for _, x, y, _ in group] for group in per_class]
            labels = [[label for *_, label in group] for group in per_class]
            if num_classes == 1:
                points, labels = points[0], labels[0]
            prompts["input_points"], prompts["input_labels"] = [points], [labels]
        if self.box is not None:
            prompts["input_boxes"] = [self.box]
        return prompts


@dataclass
class DemoSession:
    """One user's state: the image shown (an upload, or the current slice of a volume), the clicks on it (per
    slice for a volume), its label map and the files written for download (in `folder`, one per session)."""

    folder: Path
    name: str | None = None
    image: np.ndarray | None = None
    label_map: np.ndarray | None = None
    clicks: dict[int, Clicks] = field(default_factory=dict)  # image: key 0; volume: slice index
    volume: Volume | None = None
    volume_input: VolumeInput | None = None  # the window, axis and 2.5D setting the volume is sliced with
    slices: list | None = None  # `volume_slices`, display orientation
    volume_labels: np.ndarray | None = None  # (N, H, W) label maps in display orientation
    index: int = 0  # the slice shown

    @property
    def current_clicks(self) -> Clicks:
        return self.clicks.setdefault(self.index, Clicks())


class Demo:
    """The model, its processor and how it runs (mode default, autocast dtype), and the operations of the demo's
    controls on a `DemoSession`."""

    def __init__(
        self,
        model: SegmentationModel,
        processor: AutoSamImageProcessor,
        autocast_dtype: torch.dtype | None = None,
        root: str | os.PathLike | None = None,
    ):
        self.model, self.processor, self.autocast_dtype = model, processor, autocast_dtype
        self.root = Path(root) if root is not None else None
        self.num_classes = model.config.num_labels - 1

    @property
    def modes(self) -> list[str]:
        """The modes the demo offers: autosam, and surrogate when the model has h."""
        has_h = getattr(self.model, "surrogate_decoder", None) is not None
        return ["autosam", "surrogate"] if has_h else ["autosam"]

    @property
    def class_names(self) -> list[str]:
        """Names of classes 1..K (`config.id2label`), for the class the clicks belong to."""
        labels = {int(index): name for index, name in self.model.config.id2label.items()}
        return [labels[k] for k in range(1, self.num_classes + 1)]

    def new_session(self) -> DemoSession:
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        return DemoSession(folder=Path(tempfile.mkdtemp(prefix="autosam-demo-", dir=self.root)))

    # ------------------------------------------------------------------------------------------- inputs
    def open_image(self, session: DemoSession, path: str | os.PathLike, mode: str) -> DemoSession:
        """A new image (read as `autosam-predict` reads it), no clicks, segmented."""
        session = DemoSession(folder=session.folder, name=Path(path).stem, image=read_image(path))
        return self.segment(session, mode)

    def open_volume(self, session: DemoSession, paths: list[str | os.PathLike], mode: str) -> DemoSession:
        """A new volume: one NIfTI file, or the files of one DICOM series; segmented whole (`predict_volume`),
        showing its middle slice. ValueError naming the files when they are neither."""
        paths = [Path(path) for path in paths]
        if len(paths) == 1 and paths[0].name.lower().endswith((".nii", ".nii.gz")):
            volume, name = read_volume(paths[0]), nifti_stem(paths[0])
        elif paths and not any(path.name.lower().endswith((".nii", ".nii.gz")) for path in paths):
            series = session.folder / "dicom"  # the series as `read_dicom_series` reads it: one folder of files
            shutil.rmtree(series, ignore_errors=True)
            series.mkdir()
            for path in paths:
                shutil.copy(path, series / path.name)
            volume, name = read_volume(series), "dicom_series"
        else:
            names = ", ".join(path.name for path in paths) or "nothing"
            raise ValueError(f"expected one NIfTI file (.nii, .nii.gz) or the files of one DICOM series, got {names}")
        given = VolumeInput.of(self.model)  # sliced as the model was trained, else on the coarsest axis
        given = given.with_given(slice_axis=slice_axis(volume) if given.slice_axis is None else given.slice_axis)
        axis = given.slice_axis
        session = DemoSession(folder=session.folder, name=name, volume=volume, volume_input=given)
        session.slices = volume_slices(volume, axis=axis, window=given.window, context=given.context_slices)
        self._segment_volume(session, mode)
        return self.show_slice(session, len(session.slices) // 2, mode)

    def _segment_volume(self, session: DemoSession, mode: str) -> None:
        given = session.volume_input
        labels = predict_volume(
            self.model,
            self.processor,
            session.volume,
            axis=given.slice_axis,
            window=given.window,
            context_slices=given.context_slices,
            mode=mode,
            autocast_dtype=self.autocast_dtype,
        )
        session.volume_labels = to_display(labels, given.slice_axis)
        for index, clicks in session.clicks.items():  # slices the user corrected keep their corrections
            if (clicks.points or clicks.box) and canonical_mode(mode) != "surrogate":
                session.volume_labels[index] = self._predict(session.slices[index].image, clicks, mode)

    def show_slice(self, session: DemoSession, index: int, mode: str) -> DemoSession:
        """Show slice `index` of the volume, with its clicks and label map."""
        if session.volume is None:
            return session
        session.index = min(max(int(index), 0), len(session.slices) - 1)
        session.image = session.slices[session.index].image
        session.label_map = session.volume_labels[session.index]
        return session

    # ------------------------------------------------------------------------------------------- controls
    def add_click(self, session: DemoSession, x: float, y: float, kind: str, mode: str, class_index: int = 1):
        """A click at pixel (x, y) of the image shown: a positive or negative point of class `class_index`, or a
        box corner (the second corner completes the box, replacing any earlier box; binary models only)."""
        if session.image is None:
            raise ValueError("upload an image or a volume first")
        if kind not in CLICK_KINDS:
            raise ValueError(f"click kind must be one of {', '.join(CLICK_KINDS)}, got {kind!r}")
        clicks = session.current_clicks
        if kind == "box corner":
            if self.num_classes != 1:
                raise ValueError("boxes are for binary models; this one has several classes (use clicks)")
            if clicks.corner is None:
                clicks.corner = (float(x), float(y))
                return session  # nothing to segment until the box is complete
            (x0, y0), clicks.corner = clicks.corner, None
            clicks.box = [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]
        else:
            clicks.points.append((int(class_index), float(x), float(y), 1 if kind == "positive" else 0))
        return self.segment(session, mode)

    def reset_clicks(self, session: DemoSession, mode: str) -> DemoSession:
        """Remove the clicks and box of the image (or slice) shown: the automatic mask again."""
        session.clicks.pop(session.index, None)
        return self.segment(session, mode)

    def segment(self, session: DemoSession, mode: str) -> DemoSession:
        """Predict the image (or slice) shown with its clicks (the surrogate takes none: they are kept for autosam)."""
        if session.image is None:
            return session
        clicks = session.current_clicks if canonical_mode(mode) != "surrogate" else Clicks()
        session.label_map = self._predict(session.image, clicks, mode)
        if session.volume is not None:
            session.volume_labels[session.index] = session.label_map
        return session

    def change_mode(self, session: DemoSession, mode: str) -> DemoSession:
        """The other mode: a volume is segmented again whole, an image again with its clicks."""
        if session.volume is not None:
            self._segment_volume(session, mode)
            return self.show_slice(session, session.index, mode)
        return self.segment(session, mode)

    def _predict(self, image: np.ndarray, clicks: Clicks, mode: str) -> np.ndarray:
        items = [(0, image)]
        prompts = clicks.prompts(self.num_classes)
        ((_, prediction),) = iter_predictions(
            self.model, self.processor, items, mode, 1, self.autocast_dtype, **prompts
        )
        return prediction.label_map

    # ------------------------------------------------------------------------------------------- outputs
    def overlay(self, session: DemoSession) -> np.ndarray | None:
        """The image shown with its mask drawn (`prediction_pictures`) and its clicks, box and pending box corner
        marked."""
        if session.image is None or session.label_map is None:
            return None
        _, overlay = prediction_pictures(session.label_map, session.image, self.model.config.id2label)
        return mark_clicks(overlay, session.clicks.get(session.index, Clicks()))

    def download(self, session: DemoSession) -> Path | None:
        """The file offered for download, written now: for an image the mask PNG `autosam-predict` writes
        (`<name>.png`: 0/255, or the label map 0..K), for a volume the label volume on its grid (`<name>.nii.gz`,
        the corrected slices included)."""
        if session.label_map is None:
            return None
        if session.volume is not None:
            labels = stack_label_slices(list(session.volume_labels), session.volume, session.volume_input.slice_axis)
            return write_label_volume(labels, session.volume, session.folder / f"{session.name}.nii.gz")
        mask, _ = prediction_pictures(session.label_map, session.image, self.model.config.id2label)
        path = session.folder / f"{session.name}.png"
        write_png(mask, path)
        return path


def mark_clicks(overlay: np.ndarray, clicks: Clicks) -> np.ndarray:
    """The (H, W, 3) overlay with positive clicks as green dots, negative ones blue, the box (and a pending
    corner) in magenta; sizes scale with the image."""
    picture = PIL.Image.fromarray(overlay)
    draw = PIL.ImageDraw.Draw(picture)
    radius = max(4, round(max(overlay.shape[:2]) / 60))
    for _, x, y, label in clicks.points:
        color = POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color, outline=(255, 255, 255))
    if clicks.box is not None:
        draw.rectangle(clicks.box, outline=BOX_COLOR, width=max(1, radius // 2))
    if clicks.corner is not None:
        x, y = clicks.corner
        draw.line((x - radius, y, x + radius, y), fill=BOX_COLOR, width=2)
        draw.line((x, y - radius, x, y + radius), fill=BOX_COLOR, width=2)
    return np.asarray(picture)


__all__ = ["CLICK_KINDS", "Clicks", "Demo", "DemoSession", "mark_clicks"]
