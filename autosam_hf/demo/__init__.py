"""The browser demo (`autosam-demo`): upload an image or a CT/MRI volume, see AutoSAM's automatic mask, correct it
with clicks or a box, download the mask. `session` holds what the demo does (no Gradio needed), `app` its Gradio
page (`pip install 'autosam-hf[demo]'`)."""

from .session import CLICK_KINDS, Clicks, Demo, DemoSession, mark_clicks

__all__ = ["CLICK_KINDS", "Clicks", "Demo", "DemoSession", "mark_clicks"]
