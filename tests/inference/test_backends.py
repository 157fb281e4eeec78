"""`autosam_hf.inference.backends`: where `--backend auto` finds an export, and its choice of the faster backend from
the times measured (a fake clock: no timing in a test); without an export it runs PyTorch, saying why."""

from autosam_hf.export import MANIFEST_NAME
from autosam_hf.inference.backends import describe_choice, export_folder_of, fastest, time_backends, timing_image


def test_each_backend_is_timed_on_its_second_call_and_the_faster_is_chosen():
    calls = []
    costs = {"pytorch": 5, "onnxruntime": 2}
    now = [0.0]  # the fake clock: a run advances it by its cost

    def clock():
        return now[0]

    def run(name):
        def segment():
            calls.append(name)
            now[0] += costs[name]

        return segment

    timings = time_backends({name: run(name) for name in costs}, clock)
    assert calls == ["pytorch", "pytorch", "onnxruntime", "onnxruntime"]  # a warm-up, then the timed call
    assert timings == {"pytorch": 5.0, "onnxruntime": 2.0}
    assert fastest(timings) == "onnxruntime"
    assert fastest({"pytorch": 1.0, "onnxruntime": 1.0}) == "pytorch"  # a tie keeps the default
    assert describe_choice("onnxruntime", timings) == (
        "--backend auto: onnxruntime (2 s/image; pytorch 5 s/image, measured on one image)"
    )


def test_the_export_is_the_model_folder_or_its_onnx_subfolder(tmp_path, loaded):
    assert export_folder_of(str(tmp_path)) is None
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / MANIFEST_NAME).write_text("{}")
    assert export_folder_of(str(tmp_path)) == tmp_path / "onnx"
    (tmp_path / MANIFEST_NAME).write_text("{}")
    assert export_folder_of(str(tmp_path)) == tmp_path
    assert export_folder_of("my-org/autosam-kvasir") is None  # a Hub id
    _, processor = loaded
    assert timing_image(processor).shape == (24, 24, 3)  # SAM's canvas of the tiny model


def test_auto_without_an_export_runs_pytorch_and_says_why(model_dir, image_folder, tmp_path, capsys):
    from autosam_hf.inference.cli import main

    argv = [str(image_folder), "--model", str(model_dir), "--output_dir", str(tmp_path / "out"), "--quiet"]
    assert main([*argv, "--backend", "auto"]) == 0
    assert f"--backend auto: pytorch (no ONNX export in {model_dir}/onnx)" in capsys.readouterr().out
    # The PyTorch backend, its batches prepared by two threads: the same files.
    assert main([*argv, "--output_dir", str(tmp_path / "pytorch"), "--num_workers", "2", "--batch_size", "1"]) == 0
    for path in sorted((tmp_path / "pytorch" / "masks").glob("*.png")):
        assert (tmp_path / "out" / "masks" / path.name).read_bytes() == path.read_bytes()
