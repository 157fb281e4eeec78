"""The demo page's pieces that need no browser (`autosam_hf.demo.app`): a missing Gradio is named with its extra."""

import sys

import pytest

from autosam_hf.demo.app import MissingGradioError, import_gradio


def test_a_missing_gradio_is_named_with_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(MissingGradioError, match=r"pip install 'autosam-hf\[demo\]'"):
        import_gradio()
