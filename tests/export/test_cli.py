"""`autosam-export`: the command-line conventions (snake_case and kebab-case options, `prog: error` and exit
status 2 for bad input, checked before the model is loaded) and a real export from a saved model folder."""

import json
import sys

import pytest
from conftest import command_error_line, make_tiny_model

from autosam_hf.export import MANIFEST_NAME, exporters
from autosam_hf.export.cli import build_parser, main


def error_line(argv, capsys) -> str:
    return command_error_line(main, argv, capsys, "autosam-export")


@pytest.mark.parametrize("spelling", ["--output_dir", "--output-dir"])
def test_options_in_both_spellings(spelling):
    args = build_parser().parse_args(["--model", "m", spelling, "out", "--graphs", "encoder,surrogate"])
    assert (args.model, args.output_dir, args.graphs, args.opset) == ("m", "out", ("encoder", "surrogate"), 20)


def test_exports_the_requested_graphs_of_a_saved_model(model_dir, tmp_path, capsys):
    out = tmp_path / "onnx"
    # The TorchScript exporter keeps this test fast; the dynamo exporter is tested by test_onnx.py.
    argv = ["--model", str(model_dir), "--output-dir", str(out), "--graphs", "encoder", "--exporter", "torchscript"]
    assert main([*argv, "--opset", "18"]) == 0
    assert f"encoder: {out}/image_encoder.onnx (torchscript exporter, opset 18)" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert list(manifest["graphs"]) == ["encoder"] and manifest["modes"] == {}
    assert manifest["opset"] == 18 and manifest["graphs"]["encoder"]["opset"] == 18
    assert {"image_encoder.onnx", "config.json", "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    # An existing export is replaced only when asked to.
    assert "exists and is not empty (pass --overwrite" in error_line(argv, capsys)


@pytest.mark.parametrize(
    "arguments, culprit",
    [
        (["--graphs", "encoder,decoder"], "argument --graphs: expected a comma-separated list of encoder"),
        (["--opset", "9"], "--opset must be between 18 and 20, got 9"),
        (["--exporter", "tensorrt"], "argument --exporter: invalid choice: 'tensorrt'"),
    ],
    ids=["graphs", "opset", "exporter"],
)
def test_bad_arguments_end_in_one_line(tmp_path, capsys, arguments, culprit):
    line = error_line(
        ["--model", str(tmp_path / "no_model"), "--output_dir", str(tmp_path / "out"), *arguments], capsys
    )
    assert culprit in line
    assert not (tmp_path / "out").exists()


def test_bad_models_end_in_one_line(model_dir, tmp_path, capsys):
    argv = ["--output_dir", str(tmp_path / "out")]
    assert str(tmp_path / "no_model") in error_line(["--model", str(tmp_path / "no_model"), *argv], capsys)
    without_h = tmp_path / "without_h"
    make_tiny_model(use_surrogate_decoder=False).save_pretrained(without_h)
    line = error_line(["--model", str(without_h), *argv, "--graphs", "surrogate"], capsys)
    assert f"--model {without_h}: graphs: 'surrogate' needs a model with a surrogate decoder h" in line
    assert not (tmp_path / "out").exists()


def test_missing_onnx_names_the_extra(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    line = error_line(["--model", str(model_dir), "--output_dir", str(tmp_path / "out")], capsys)
    assert "needs the package 'onnxscript': pip install 'autosam-hf[onnx]'" in line


def test_a_graph_that_cannot_be_exported_ends_with_status_1(model_dir, tmp_path, capsys, monkeypatch):
    def fails(spec, path, opset):
        raise RuntimeError("unsupported operator")

    monkeypatch.setitem(exporters.EXPORT_FUNCTIONS, "torchscript", fails)
    argv = ["--model", str(model_dir), "--output_dir", str(tmp_path / "out"), "--graphs", "encoder"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--exporter", "torchscript"])
    assert exit_info.value.code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "autosam-export: error: Exporting graph 'encoder' failed (torchscript: unsupported operator)"
    assert not (tmp_path / "out").exists()
