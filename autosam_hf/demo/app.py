"""The Gradio page of `autosam-demo`: its controls, wired to `autosam_hf.demo.session.Demo`'s operations.

Gradio (`pip install 'autosam-hf[demo]'`) is imported when the page is built, so the rest of the package (and
`autosam-demo --help`) works without it.
"""

import functools
import importlib
import os
from types import ModuleType

from ..model.configuration_autosam import canonical_mode
from .session import CLICK_KINDS, Demo, DemoSession

DEMO_EXTRA_HINT = "pip install 'autosam-hf[demo]' (gradio)"
# The elements the browser test finds (`elem_id`s), named once.
ELEMENT_IDS = {
    "image": "autosam-image",
    "volume": "autosam-volume",
    "slice": "autosam-slice",
    "overlay": "autosam-overlay",
    "click_kind": "autosam-click-kind",
    "class": "autosam-class",
    "mode": "autosam-mode",
    "reset": "autosam-reset",
    "download": "autosam-download",
    "status": "autosam-status",
}


class MissingGradioError(ImportError, ValueError):
    """Gradio is not installed; a ValueError too, so `autosam-demo` reports it in one line (exit status 2)."""


def import_gradio() -> ModuleType:
    """gradio, without its usage analytics (the demo runs locally and must not phone home), or
    `MissingGradioError` naming the extra to install."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return importlib.import_module("gradio")
    except ImportError as error:
        raise MissingGradioError(f"autosam-demo needs gradio: {DEMO_EXTRA_HINT}") from error


def status_line(demo: Demo, session: DemoSession, mode: str) -> str:
    """What the page says under the picture: the input, its clicks and box in pixel coordinates (what
    `autosam-predict --points X,Y --point_labels L --box X0,Y0,X1,Y1` takes), and what the surrogate ignores."""
    if session.image is None:
        return "Upload an image or a volume."
    where = session.name if session.volume is None else f"{session.name}, slice {session.index}"
    clicks = session.clicks.get(session.index)
    if clicks is None or not (clicks.points or clicks.box or clicks.corner):
        return f"{where}: the automatic mask (no clicks)"
    parts = []
    if clicks.points:
        marks = [f"{'+' if label == 1 else '-'}{x:g},{y:g}" for _, x, y, label in clicks.points]
        parts.append("clicks " + " ".join(marks))
    if clicks.box is not None:
        parts.append("box " + ",".join(f"{value:g}" for value in clicks.box))
    if clicks.corner is not None:
        parts.append("click the box's opposite corner")
    if canonical_mode(mode) == "surrogate":
        parts.append("the surrogate h(g(I)) takes no clicks: they apply in mode autosam")
    return f"{where}: " + "; ".join(parts)


def build_app(demo: Demo, title: str = "AutoSAM"):
    """The `gradio.Blocks` page of `demo`: upload, the overlay to click on, the controls and the download."""
    gr = import_gradio()
    default_mode = canonical_mode(demo.model.config.default_mode)
    default_mode = default_mode if default_mode in demo.modes else "autosam"

    def session_of(session: DemoSession | None) -> DemoSession:
        return session if session is not None else demo.new_session()

    def shown(session: DemoSession, mode: str):
        """The outputs every handler updates: state, overlay, download file, status."""
        return session, demo.overlay(session), demo.download(session), status_line(demo, session, mode)

    def guarded(operation):
        """Bad input (an unreadable upload, a box on a multi-class model) as a message on the page."""

        @functools.wraps(operation)  # Gradio reads the signature: `gr.SelectData` is filled in by its annotation
        def handler(*args, **kwargs):
            try:
                return operation(*args, **kwargs)
            except ValueError as error:
                raise gr.Error(str(error)) from error

        return handler

    @guarded
    def on_image(session, path, mode):
        session = session_of(session)
        hidden = gr.update(visible=False)  # no slice slider for an image
        if path is None:  # the image was cleared
            return (*shown(DemoSession(folder=session.folder), mode), hidden)
        return (*shown(demo.open_image(session, path, mode), mode), hidden)

    @guarded
    def on_volume(session, files, mode):
        session = session_of(session)
        if not files:
            return (*shown(DemoSession(folder=session.folder), mode), gr.update(visible=False))
        paths = [getattr(file, "name", file) for file in files]
        session = demo.open_volume(session, paths, mode)
        slider = gr.update(visible=True, minimum=0, maximum=len(session.slices) - 1, value=session.index)
        return (*shown(session, mode), slider)

    @guarded
    def on_slice(session, index, mode):
        return shown(demo.show_slice(session_of(session), index, mode), mode)

    @guarded
    def on_click(session, kind, mode, class_name, event: gr.SelectData):
        session = session_of(session)
        x, y = event.index
        class_index = demo.class_names.index(class_name) + 1 if class_name in demo.class_names else 1
        return shown(demo.add_click(session, x, y, kind, mode, class_index), mode)

    @guarded
    def on_reset(session, mode):
        return shown(demo.reset_clicks(session_of(session), mode), mode)

    @guarded
    def on_mode(session, mode):
        return shown(demo.change_mode(session_of(session), mode), mode)

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"## {title}\nThe automatic mask of an image (or a CT/MRI volume's slice); click on it to correct it: "
            "positive points on what belongs to the object, negative ones on what does not, or two box corners."
        )
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id=ELEMENT_IDS["image"])
                volume = gr.File(
                    label="Or a volume: a NIfTI file, or the files of one DICOM series",
                    file_count="multiple",
                    elem_id=ELEMENT_IDS["volume"],
                )
                slider = gr.Slider(0, 1, value=0, step=1, label="Slice", visible=False, elem_id=ELEMENT_IDS["slice"])
            with gr.Column(scale=2):
                overlay = gr.Image(
                    label="Mask (click on it to correct)",
                    type="numpy",
                    interactive=False,
                    format="png",
                    elem_id=ELEMENT_IDS["overlay"],
                )
                status = gr.Markdown("Upload an image or a volume.", elem_id=ELEMENT_IDS["status"])
                with gr.Row():
                    kind = gr.Radio(
                        list(CLICK_KINDS), value="positive", label="A click adds", elem_id=ELEMENT_IDS["click_kind"]
                    )
                    mode = gr.Radio(demo.modes, value=default_mode, label="Mode", elem_id=ELEMENT_IDS["mode"])
                class_name = gr.Dropdown(
                    demo.class_names,
                    value=demo.class_names[0],
                    label="Class of the clicks",
                    visible=demo.num_classes > 1,
                    elem_id=ELEMENT_IDS["class"],
                )
                with gr.Row():
                    reset = gr.Button("Reset clicks", elem_id=ELEMENT_IDS["reset"])
                    download = gr.DownloadButton(
                        "Download the mask", variant="primary", elem_id=ELEMENT_IDS["download"]
                    )
        outputs = [state, overlay, download, status]
        image.change(on_image, [state, image, mode], [*outputs, slider])
        volume.upload(on_volume, [state, volume, mode], [*outputs, slider])
        slider.release(on_slice, [state, slider, mode], outputs)
        overlay.select(on_click, [state, kind, mode, class_name], outputs)
        reset.click(on_reset, [state, mode], outputs)
        mode.change(on_mode, [state, mode], outputs)
    return app


__all__ = ["DEMO_EXTRA_HINT", "ELEMENT_IDS", "MissingGradioError", "build_app", "import_gradio", "status_line"]
