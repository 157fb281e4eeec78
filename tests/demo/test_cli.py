"""`autosam-demo` (`autosam_hf.demo.cli`): bad arguments and a model that cannot be loaded end with one line."""

from conftest import command_error_line

from autosam_hf.demo.cli import main


def test_bad_arguments_end_with_one_line(tmp_path, capsys):
    line = command_error_line(main, ["--model", str(tmp_path / "none")], capsys, "autosam-demo")
    assert "Could not load an AutoSAM model from" in line and "none" in line
    line = command_error_line(main, ["--model", "m", "--port", "70000"], capsys, "autosam-demo")
    assert "--port" in line and "1..65535" in line
