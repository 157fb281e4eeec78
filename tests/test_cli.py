"""autosam_hf.cli, and the convention every command follows with it: snake_case options with kebab-case aliases,
`--model` and `--output_dir` everywhere, and bad input ending in `prog: error: <one line>`, exit status 2, no
traceback."""

import argparse
import re

import pytest
import torch

from autosam_hf.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    ArgumentParser,
    add_output_dir_argument,
    add_runtime_arguments,
    int_in_range,
    non_negative_int,
    one_line,
    positive_int,
    resolve_runtime,
)
from autosam_hf.evaluation.cli import build_parser as eval_parser
from autosam_hf.evaluation.cli import main as eval_main
from autosam_hf.export.cli import build_parser as export_parser
from autosam_hf.export.cli import main as export_main
from autosam_hf.export.dependencies import missing_onnx_packages
from autosam_hf.hub.cli import build_parser as publish_parser
from autosam_hf.hub.cli import main as publish_main
from autosam_hf.inference.cli import build_parser as predict_parser
from autosam_hf.inference.cli import main as predict_main


# ------------------------------------------------------------------------------------------- the parser
def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="autosam-test")
    parser.add_argument("--batch_size", type=positive_int, default=8)
    group = parser.add_argument_group("output")
    add_output_dir_argument(group, help="where")
    exclusive = parser.add_mutually_exclusive_group()
    exclusive.add_argument("--dry_run", action="store_true")
    exclusive.add_argument("--upload_now", action="store_true")
    return parser


@pytest.mark.parametrize("spelling", ["snake", "kebab"])
def test_every_option_is_accepted_in_snake_and_kebab_case(spelling):
    def option(name):
        return name if spelling == "snake" else name.replace("_", "-")

    argv = [option("--batch_size"), "3", option("--output_dir"), "out", option("--dry_run")]
    args = make_parser().parse_args(argv)
    assert (args.batch_size, args.output_dir, args.dry_run) == (3, "out", True)


def test_help_shows_both_spellings_and_prefixes_are_not_expanded(capsys):
    help_text = make_parser().format_help()
    for option in ("--batch_size", "--batch-size", "--output_dir", "--output-dir", "--dry_run", "--dry-run"):
        assert option in help_text
    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args(["--out", "x"])  # a prefix of --output_dir: not an abbreviation here
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "unrecognized arguments: --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_parser().parse_args(["--dry_run", "--upload-now"])  # the mutually exclusive group knows the aliases


def test_options_must_be_declared_in_snake_case():
    with pytest.raises(ValueError, match="--output-dir.*snake_case"):
        ArgumentParser().add_argument("--output-dir")


def test_run_reports_bad_input_on_one_line_with_status_2(capsys):
    def command(args):
        raise ValueError(f"Cannot read image {args.output_dir}:\n  truncated file")

    with pytest.raises(SystemExit) as exit_info:
        make_parser().run(command, ["--output_dir", "x.png"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "autosam-test: error: Cannot read image x.png: truncated file\n"

    def missing(args):
        open(args.output_dir)

    with pytest.raises(SystemExit) as exit_info:
        make_parser().run(missing, ["--output_dir", "/nowhere/at/all"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert re.fullmatch(r"autosam-test: error: .*No such file.*/nowhere/at/all'\n", capsys.readouterr().err)


def test_run_returns_the_commands_status_and_maps_declared_failures_to_1(capsys):
    assert make_parser().run(lambda args: None, []) == 0
    assert make_parser().run(lambda args: 3, []) == 3

    class UploadError(OSError):
        pass

    def upload(args):
        raise UploadError("503 Service Unavailable")

    parser = ArgumentParser(prog="autosam-test", failures=(UploadError,))
    with pytest.raises(SystemExit) as exit_info:
        parser.run(upload, [])
    assert exit_info.value.code == EXIT_FAILED
    assert capsys.readouterr().err == "autosam-test: error: 503 Service Unavailable\n"
    # Anything else is a bug: it keeps its traceback.
    with pytest.raises(KeyError):
        parser.run(lambda args: {}["x"], [])


def test_integer_ranges_and_one_line():
    assert positive_int("4") == 4 and non_negative_int("0") == 0 and int_in_range(1, 65535)("65535") == 65535
    for parse, text in [(positive_int, "0"), (positive_int, "-2"), (positive_int, "two"), (non_negative_int, "-1")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    with pytest.raises(argparse.ArgumentTypeError, match="must be in 1..65535, got 65536"):
        int_in_range(1, 65535)("65536")
    assert one_line(ValueError("a\n\n  b  \n")) == "a b"
    assert one_line(ValueError()) == "ValueError"


def test_runtime_arguments_resolve_through_autosam_hf_runtime():
    parser = ArgumentParser()
    add_runtime_arguments(parser)
    assert resolve_runtime(parser.parse_args(["--device", "cpu", "--dtype", "float32"])) == (torch.device("cpu"), None)
    assert resolve_runtime(parser.parse_args(["--device", "cpu", "--dtype", "bfloat16"]))[1] == torch.bfloat16
    with pytest.raises(ValueError, match="--device"):
        resolve_runtime(parser.parse_args(["--device", "gpu0"]))


# ------------------------------------------------------------------------------------------- every command
def eval_arguments(tmp_path, model, output_option):
    return ["--model", model, "--datasets", f"kvasir={tmp_path / 'no_data'}", output_option, str(tmp_path / "out")]


def predict_arguments(tmp_path, model, output_option):
    return [str(tmp_path / "no_image.png"), "--model", model, output_option, str(tmp_path / "out")]


def publish_arguments(tmp_path, model, output_option):
    argv = ["--model", model, "--preset", "kvasir", "--hub_model_id", "me/model", "--dry_run"]
    return [*argv, output_option, str(tmp_path / "out")]


def export_arguments(tmp_path, model, output_option):
    return ["--model", model, output_option, str(tmp_path / "out")]


# autosam-export checks its optional packages before loading the model: without them, the error names the extra.
EXPORT_CULPRIT = "autosam-hf[onnx]" if missing_onnx_packages() else "no_model"

# (prog, parser, main, arguments, what bad input (no data, no image, no trained folder) names)
COMMANDS = [
    ("autosam-eval", eval_parser, eval_main, eval_arguments, "no_data"),
    ("autosam-predict", predict_parser, predict_main, predict_arguments, "no_image.png"),
    ("autosam-publish", publish_parser, publish_main, publish_arguments, "no_model"),
    ("autosam-export", export_parser, export_main, export_arguments, EXPORT_CULPRIT),
]


@pytest.mark.parametrize("prog, build_parser, main, arguments, culprit", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_takes_model_and_output_dir_in_both_spellings(prog, build_parser, main, arguments, culprit, tmp_path):
    parser = build_parser()
    assert parser.prog == prog
    for output_option in ("--output_dir", "--output-dir"):
        args = parser.parse_args(arguments(tmp_path, "my-model", output_option))
        assert args.model == "my-model" and args.output_dir == str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(arguments(tmp_path, "my-model", "--output_dir")[2:])  # without --model
    assert exit_info.value.code == EXIT_BAD_INPUT


@pytest.mark.parametrize("prog, build_parser, main, arguments, culprit", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_reports_bad_input_as_prog_error_without_traceback(
    prog, build_parser, main, arguments, culprit, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments(tmp_path, str(tmp_path / "no_model"), "--output-dir"))
    assert exit_info.value.code == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "Traceback" not in error
    (line,) = error.splitlines()  # one line, and nothing else (the model is never loaded)
    assert line.startswith(f"{prog}: error: ") and culprit in line
    assert not (tmp_path / "out").exists()  # nothing was written
