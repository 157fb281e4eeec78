"""The benchmarks must not rot: every one runs in its --quick form and its numbers land in the tables."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_command

from autosam_hf.runtime import cpu_has_native_bfloat16

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_all_benchmarks_run_quick(tmp_path, shared_data_dir):
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "benchmarks.run_all", "--quick"]
    result = run_command(command, env=environment, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    training_result = json.loads((tmp_path / "training" / "quick.json").read_text())
    training = training_result["sizes"]["small"]
    # bf16 rows only where the CPU computes bf16 natively (emulated bf16 takes minutes and says nothing).
    native_bf16 = cpu_has_native_bfloat16()
    assert set(training) == {"no_cache fp32", "cache fp32"} | ({"cache bf16"} if native_bf16 else set())
    assert all(v["seconds_per_step"] > 0 for v in training.values())
    assert (
        training["cache fp32"]["cache_build_seconds"] > 0 and training["no_cache fp32"]["cache_build_seconds"] is None
    )
    # The floor of the cached step: g's FLOPs at its input size (64 with --quick) over the measured GEMM rate.
    floor = training_result["arithmetic_floor"]
    assert 0 < floor["g_forward_backward_gflop_per_image"] < 244 / 20  # 244 GFLOP at 352; area (64/352)² ≈ 1/30
    assert floor["floor_seconds_per_image"] == pytest.approx(
        floor["g_forward_backward_gflop_per_image"] / floor["gemm_gflop_per_second"]
    )

    inference = json.loads((tmp_path / "inference" / "quick.json").read_text())
    assert {"autosam fp32", "surrogate fp32", "sam_point fp32"} <= set(inference["modes"])
    assert ("autosam bf16" in inference["modes"]) == native_bf16
    assert set(inference["breakdown"]["fp32"]) == {
        "sam_image_encoder",
        "prompt_generator_g",
        "sam_mask_decoder",
        "surrogate_decoder_h",
    }

    loader = json.loads((tmp_path / "loader" / "quick.json").read_text())
    assert loader["machine"] and loader["cache_build"]["images_per_second"] > 0
    assert {0, 1, 2, loader["default_workers"]} == {int(workers) for workers in loader["loader"]}
    assert all(figures["images_per_second"] > 0 for figures in loader["loader"].values())
    assert loader["step"]["images_per_second"] > 0 and loader["loader_to_step"] > 0

    precision = json.loads((tmp_path / "cache_precision" / "quick.json").read_text())
    assert precision["sizes"]["tiny_encoder"]["max_abs_logit_difference"] >= 0

    real = json.loads((tmp_path / "real_data" / "quick.json").read_text())
    assert set(real["models"]) == {"pipeline:default", "minimal:g+h", "minimal:unet"}
    assert real["machine"]["cpu"] and "cpu_native_bfloat16" in real["machine"]
    for model in real["models"].values():
        assert model["steps"] == 6 and [point["step"] for point in model["curve"]][-1] == 6
        assert all(0.0 <= model["test"][name]["dice"] <= 1.0 for name in ("kvasir", "colondb", "etis"))
    # The Kvasir-trained pipeline squashes (the polyp presets' rule) and is scored letterboxed too, as a probe.
    pipeline = real["models"]["pipeline:default"]
    assert pipeline["canvas_rule"] == "squash" and set(pipeline["test_letterbox"]) == {"kvasir", "colondb", "etis"}
    assert (tmp_path / "real_data" / "quick.png").stat().st_size > 0

    # The printed tables carry every benchmark, each captioned with the machine it ran on.
    headings = (
        "Training cost",
        "Inference cost per image",
        "Where one AutoSAM forward",
        "Does the data path keep up?",
        "float16 embedding cache",
        "Real data",
    )
    for heading in headings:
        assert heading in result.stdout
    assert result.stdout.count(training_result["machine"]) >= 4
    # No reference was given: no reference column (ratios never come from another run or machine).
    assert "reference" not in training_result and "vs reference" not in result.stdout
    assert "Arithmetic floor of the cached step" in result.stdout


@pytest.mark.slow
def test_gpu_path_runs_in_its_cpu_form(tmp_path, shared_data_dir):
    """`benchmarks.run_all --device cpu --quick-gpu`: the GPU command's every part, at tiny sizes on the CPU."""
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "benchmarks.run_all", "--device", "cpu", "--quick-gpu"]
    result = run_command(command, env=environment, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    gpu = json.loads((tmp_path / "gpu_path" / "quick.json").read_text())
    assert gpu["device"] == "cpu" and gpu["machine"] and gpu["machine_details"]["cpu"]
    training = gpu["training"]
    for variant in ("cached", "no_cache"):
        assert training[variant]["images_per_second"] > 0
    assert training["cached"]["cache_build_seconds"] > 0 and training["no_cache"]["cache_build_seconds"] is None
    assert training["cached_to_no_cache"] > 0
    resume = gpu["resume"]
    assert resume["losses_match"] and resume["steps"] == gpu["steps"] and resume["stopped_after_step"] > 0
    evaluation = gpu["evaluation"]["results"]
    assert set(evaluation) == {"autosam", "surrogate"}
    assert all(0.0 <= scores["kvasir"]["dice"] <= 1.0 for scores in evaluation.values())
    assert {mode: v["images_per_second"] > 0 for mode, v in gpu["inference"]["modes"].items()} == {
        "autosam": True,
        "surrogate": True,
        "sam_point": True,
    }
    loader = gpu["loader"]
    assert loader["cache_build"]["images_per_second"] > 0 and loader["step"]["images_per_second"] > 0
    assert all(figures["images_per_second"] > 0 for figures in loader["loader"].values())
    assert "The GPU path in one command" in result.stdout and gpu["machine"] in result.stdout

    throughput = json.loads((tmp_path / "throughput" / "quick.json").read_text())
    for mode in ("autosam", "surrogate"):  # the processor's canvases and the device's
        inference = throughput["inference"][mode]
        assert inference["workers"]["0"]["images_per_second"] > 0
        assert inference["device_canvas"]["workers"]["0"]["images_per_second"] > 0
        assert set(inference["device_canvas"]["stages"]) == {"prepare", "model", "postprocess"}
    for build in (throughput["cache_build"], throughput["cache_build_device_canvas"]):
        assert build["images_per_second"] > 0 and build["gflops_per_image"] > 0
    assert "| cache build | device |" in result.stdout
    assert "Throughput (cpu" in result.stdout

    encoder = json.loads((tmp_path / "encoder" / "quick.json").read_text())
    variants = encoder["variants"]
    assert set(variants) == {"dense", "folded", "dense compiled", "folded compiled"}
    assert all(row["images_per_second"] > 0 for row in variants.values())
    # Each variant's features against the dense kernel's: float32 rounding, on a signal of real size.
    assert encoder["variants"]["dense"]["reference_max_abs"] > 0.1
    assert all(row["max_abs_difference_vs_dense"] < 1e-4 * row["reference_max_abs"] for row in variants.values())
    assert "SAM's image encoder by attention kernel** (cpu" in result.stdout


def test_a_timed_out_command_leaves_no_process_behind(tmp_path):
    """run_command kills the whole process group: a grandchild (as a launcher's worker would be) goes too."""
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_command([sys.executable, "-c", script], timeout=2)
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        if not is_running(grandchild):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {grandchild} is still running after the time-out")


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a killed process whose parent has not reaped it yet runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(
    not os.environ.get("AUTOSAM_REFERENCE_DIR"),
    reason="set AUTOSAM_REFERENCE_DIR to a checkout of talshaharabany/AutoSAM (and AUTOSAM_REFERENCE_PYTHONPATH to "
    "a folder with torchvision, if it is not installed) to time the official code",
)
@pytest.mark.parametrize("part", ["train", "inference"])
def test_reference_runs_unedited(part, shared_data_dir):
    """The official code, smoke-sized (1-layer ViT, g at 64): it imports, runs and is timed with only run-time
    patches (no download, no CUDA), which the result lists."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.reference",
        "--reference_dir",
        os.environ["AUTOSAM_REFERENCE_DIR"],
        "--part",
        part,
    ]
    command += ["--prompt_size", "64", "--tiny_sam", "--repeats", "1", "--keep_freed_cpu_memory"]
    if os.environ.get("AUTOSAM_REFERENCE_PYTHONPATH"):
        command += ["--reference_pythonpath", os.environ["AUTOSAM_REFERENCE_PYTHONPATH"]]
    result = run_command(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["seconds_per_image"] > 0 and len(figures["seconds"]) == 1
    assert "HarDNet ImageNet download → random initialisation" in figures["patches"]
    assert figures["keep_freed_cpu_memory"] == bool(os.confstr("CS_GNU_LIBC_VERSION"))


def test_tables_show_the_reference_with_and_without_the_allocator_setting():
    """Each ratio divides figures of one run: ours against the reference as published and against the reference
    given the allocator setting our commands apply."""
    from benchmarks.tables import render_inference, render_training

    def timed(seconds: float, kept: bool) -> dict:
        return {
            "sam": "vit_b",
            "seconds_per_image": seconds,
            "seconds_per_repeat": 3 * seconds,
            "images_per_second": 1 / seconds,
            "keep_freed_cpu_memory": kept,
        }

    references = {"reference": timed(20.0, False), "reference_keep_freed_cpu_memory": timed(16.0, True)}
    ours = {"speedup_vs_reference": 2.0, "speedup_vs_reference_keep_freed_cpu_memory": 1.6}
    inference = {
        "sam": "vit_b",
        "batch_size": 1,
        "images": 3,
        "machine": "AMD EPYC (AVX2)",
        "modes": {
            "autosam fp32": {
                "seconds": [10.0],
                "seconds_per_image": 10.0,
                "images_per_second": 0.1,
                "peak_memory_mib": 2000,
                "speedup_vs_autosam_same_precision": 1.0,
                **ours,
            }
        },
        "breakdown": {"fp32": {"sam_image_encoder": {"seconds": 9.0, "share_of_autosam_forward": 0.9}}},
        **references,
    }
    table = "\n".join(render_inference(inference))
    assert "| reference inference fp32 (vit_b) | 20.000 | 0.05 | – | – | 1.0× | 0.8× |" in table
    assert "| reference inference fp32 (vit_b), freed memory kept | 16.000 | 0.06 | – | – | 1.2× | 1.0× |" in table
    assert "| autosam fp32 | 10.000 | 0.10 | 2000 | 1.0× | 2.0× | 1.6× |" in table
    training = {
        "batch_size": 3,
        "g": "HarDNet-85 at 352",
        "machine": "AMD EPYC (AVX2)",
        "sizes": {
            "vit_b": {
                "cache fp32": {
                    "seconds_per_step": 6.0,
                    "seconds_per_image": 2.0,
                    "speedup_vs_no_cache_fp32": 8.0,
                    "cache_build_seconds_per_image": 10.0,
                    "speedup_vs_reference": 10.0,
                    "speedup_vs_reference_keep_freed_cpu_memory": 8.0,
                }
            }
        },
        **references,
    }
    table = "\n".join(render_training(training))
    assert "| vit_b | reference loop fp32, freed memory kept | 48.00 | 16.000 | 0.06 | – | 1.2× | 1.0× | – |" in table
    assert "| vit_b | cache fp32 | 6.00 | 2.000 | 0.50 | 8.0× | 10.0× | 8.0× | 10.00 |" in table
    # Without the second reference run, no such column.
    del training["reference_keep_freed_cpu_memory"]
    assert "allocator" not in "\n".join(render_training(training))


def test_every_real_data_variant_is_a_valid_training_command():
    """bench_real_data's ablation rows are autosam-train flags after the benchmark's own (argparse: the last
    wins); each must parse and resolve, and the BatchNorm rows must keep 8 images per optimizer step."""
    from autosam_hf.training.cli import build_parser
    from autosam_hf.training.settings import resolve_settings
    from benchmarks.bench_real_data import VARIANTS

    benchmark_flags = ["--stage", "standalone", "--preset", "kvasir", "--data", "/data", "--output_dir", "/out"]
    parser = build_parser()
    resolved = {
        name: resolve_settings(
            parser.parse_args([*benchmark_flags, "--per_device_train_batch_size", "8", *flags]), "no"
        )
        for name, flags in VARIANTS.items()
    }
    for name, settings in resolved.items():
        assert settings.batch_size * settings.gradient_accumulation_steps == 8, name
    assert (resolved["constant+batch4x2"].batch_size, resolved["constant+batch2x4"].batch_size) == (4, 2)


def fake_real_data_result(seed: int, val_dice: list[float], kvasir: float, steps: int = 300) -> dict:
    """A benchmarks.bench_real_data result file with one model, `minimal:unet`, validated every 100 steps."""
    curve = [{"step": 100 * (i + 1), "val_dice": dice} for i, dice in enumerate(val_dice)]
    best = max(curve, key=lambda point: point["val_dice"])
    test = {"kvasir": {"dice": kvasir}, "colondb": {"dice": kvasir / 2}, "etis": {"dice": kvasir / 4}}
    return {
        "machine": {"cpu": "AMD EPYC", "description": "AMD EPYC (AVX2), 1 threads"},
        "settings": {"steps": steps, "batch_size": 8, "input_size": 224, "seed": seed, "threads": 1, "device": "cpu"},
        "models": {
            "minimal:unet": {
                "runner": "minimal",
                "image_size": 256,
                "curve": curve,
                "best_val": {"dice": best["val_dice"]},
                "test": test,
            }
        },  # fmt: skip
    }


def write_results(folder: Path, results: dict[str, dict]) -> None:
    """Result files `folder/runs/<name>.json` (the results `runs/<name>`)."""
    (folder / "runs").mkdir(exist_ok=True)
    for name, result in results.items():
        (folder / "runs" / f"{name}.json").write_text(json.dumps(result))


def run_seeds(argv: list[str], results_dir: Path, monkeypatch, capsys) -> str:
    """`python -m benchmarks.seeds ARGV` on the results under `results_dir`, in this process; its stdout."""
    import benchmarks.common
    from benchmarks.seeds import main

    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", results_dir)
    capsys.readouterr()
    main(argv)
    return capsys.readouterr().out


def test_seeds_gathers_one_recipe_over_seeds_as_mean_and_sd(tmp_path, monkeypatch, capsys):
    """benchmarks.seeds: the mean and sample sd of each milestone and test set over the named runs."""
    runs = {"a": fake_real_data_result(1, [0.4, 0.5, 0.6], 0.7), "b": fake_real_data_result(2, [0.2, 0.7, 0.5], 0.9)}
    write_results(tmp_path, runs)
    arguments = ["--name", "seeds/both"]
    arguments += [
        "--group",
        "U-Net=runs/a:minimal:unet,runs/b:minimal:unet",
        "--group",
        "U-Net seed 1=runs/a:minimal:unet",
    ]
    stdout = run_seeds(arguments, tmp_path, monkeypatch, capsys)

    both = json.loads((tmp_path / "seeds" / "both.json").read_text())["groups"]["U-Net"]
    assert [run["seed"] for run in both["runs"]] == [1, 2]
    assert both["val_dice"]["100"]["mean"] == pytest.approx(0.3)
    assert both["val_dice"]["200"]["sd"] == pytest.approx(0.1414214, abs=1e-6)  # sample sd of 0.5 and 0.7
    assert both["best_val_dice"]["values"] == [0.6, 0.7]
    assert both["test_dice"]["kvasir"]["mean"] == pytest.approx(0.8)
    assert both["test_dice"]["etis"]["values"] == pytest.approx([0.175, 0.225])
    assert "| U-Net | 1, 2 | 0.300 ± 0.141 | 0.550 ± 0.071 | – | – | 0.650 ± 0.071 | 0.800 ± 0.141 |" in stdout
    assert "| U-Net seed 1 | 1 | 0.400 | 0.600 | – | – | 0.600 | 0.700 |" in stdout  # one seed: no sd
    assert (tmp_path / "seeds" / "both.png").stat().st_size > 0


def test_seeds_compares_two_groups_seed_for_seed(tmp_path, monkeypatch, capsys):
    """--compare A B: A − B over the (seed, device) runs both groups have — one seed's GPU run is another draw than
    its CPU run, so a group holds both and each pairs with its own device's."""
    runs = {
        "a1": fake_real_data_result(1, [0.6], 0.80),
        "a2": fake_real_data_result(2, [0.7], 0.90),
        "a1_gpu": fake_real_data_result(1, [0.5], 0.70),
        "b1": fake_real_data_result(1, [0.5], 0.85),
        "b2": fake_real_data_result(2, [0.6], 0.80),
        "b1_gpu": fake_real_data_result(1, [0.6], 0.60),
        "b3": fake_real_data_result(3, [0.9], 0.99),  # no partner in A: left out of the pairs
    }
    runs["a1_gpu"]["settings"]["device"] = runs["b1_gpu"]["settings"]["device"] = "cuda"
    write_results(tmp_path, runs)
    arguments = ["--name", "seeds/pairs", "--compare", "A", "B"]
    arguments += ["--group", "A=runs/a1:minimal:unet,runs/a2:minimal:unet,runs/a1_gpu:minimal:unet"]
    arguments += [
        "--group",
        "B=runs/b3:minimal:unet,runs/b1_gpu:minimal:unet,runs/b2:minimal:unet,runs/b1:minimal:unet",
    ]
    stdout = run_seeds(arguments, tmp_path, monkeypatch, capsys)

    comparison = json.loads((tmp_path / "seeds" / "pairs.json").read_text())["comparisons"]["A − B"]
    assert comparison["pairs"] == [[1, "cpu"], [2, "cpu"], [1, "cuda"]]
    assert comparison["unpaired"] == [[3, "cpu"]]
    assert "(left out, without a partner: seed 3 (cpu))" in stdout
    kvasir = comparison["differences"]["kvasir"]  # A − B: -0.05, +0.10, +0.10
    assert kvasir["mean_difference"] == pytest.approx(0.05)
    assert kvasir["sd"] == pytest.approx(0.0866025, abs=1e-6)
    assert kvasir["standard_error"] == pytest.approx(0.0866025 / 3**0.5, abs=1e-6)
    assert kvasir["first_ahead"] == 2
    best_val = comparison["differences"]["best val"]  # +0.1, +0.1, -0.1
    assert (best_val["mean_difference"], best_val["first_ahead"]) == (pytest.approx(0.1 / 3), 2)
    assert "| kvasir | 3 | +0.0500 ± 0.0500 | 0.0866 | 2 of 3 |" in stdout
    assert "| A | 1, 2 (cpu); 1 (cuda) |" in stdout


def test_seeds_refuses_to_compare_a_group_it_was_not_given_or_a_pair_twice(capsys):
    from benchmarks.seeds import main

    with pytest.raises(SystemExit) as exit_status:
        main(["--group", "A=a1:minimal:unet", "--group", "B=b1:minimal:unet", "--compare", "A", "C"])
    assert exit_status.value.code == 2
    assert "--compare: no group labelled 'C' (['A', 'B'])" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_status:
        main(["--group", "A=a1:minimal:unet", "--group", "B=b1:minimal:unet", *["--compare", "A", "B"] * 2])
    assert exit_status.value.code == 2
    assert "--compare: a pair appears twice" in capsys.readouterr().err


def test_seeds_refuses_runs_that_are_not_the_same_recipe(tmp_path, monkeypatch):
    """A group's runs differ by their seed only: other settings, a repeated seed or a missing run name the cause."""
    import benchmarks.common
    from benchmarks.seeds import gather, parse_group

    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    results = {
        "seed1": fake_real_data_result(1, [0.4], 0.7),
        "seed1_again": fake_real_data_result(1, [0.5], 0.8),
        "seed2_longer": fake_real_data_result(2, [0.5], 0.8, steps=1000),
    }
    results["seed2_pipeline"] = fake_real_data_result(2, [0.5], 0.8)
    results["seed2_pipeline"]["models"]["minimal:unet"]["runner"] = "pipeline"
    write_results(tmp_path, results)
    with pytest.raises(ValueError, match=r"runs/seed2_longer.json differs from runs/seed1.json in \['steps'\]"):
        gather("U-Net", [("runs/seed1", "minimal:unet"), ("runs/seed2_longer", "minimal:unet")])
    with pytest.raises(ValueError, match=r"runs/seed2_pipeline:minimal:unet is a \('pipeline', 256\) model"):
        gather("U-Net", [("runs/seed1", "minimal:unet"), ("runs/seed2_pipeline", "minimal:unet")])
    with pytest.raises(ValueError, match="a seed appears twice on one device"):
        gather("U-Net", [("runs/seed1", "minimal:unet"), ("runs/seed1_again", "minimal:unet")])
    with pytest.raises(ValueError, match=r"no .*/runs/missing.json"):
        gather("U-Net", [("runs/missing", "minimal:unet")])
    with pytest.raises(ValueError, match="result name 'seed1': expected EXPERIMENT/RUN"):
        gather("U-Net", [("seed1", "minimal:unet")])
    with pytest.raises(ValueError, match="has no model 'pipeline:default'"):
        gather("U-Net", [("runs/seed1", "pipeline:default")])
    assert parse_group("pipeline:default=a:pipeline:default+cosine, b:x") == (
        "pipeline:default",
        [("a", "pipeline:default+cosine"), ("b", "x")],
    )
    with pytest.raises(ValueError, match="is not FILE:MODEL"):
        parse_group("U-Net=seed1")


def test_in_process_runs_set_their_environment_and_threads_for_the_call_only(monkeypatch):
    """Smoke runs call a module's `__main__` here: the run's environment, threads and argv apply to that call only,
    its stdout is what the call returns, a non-zero exit names the command, and `run_training` runs only the
    training script."""
    import torch

    import autosam_hf.training.cli
    from benchmarks.common import run_python, run_training

    calls = []

    def main(argv: list[str] | None = None) -> int:
        argv = sys.argv[1:] if argv is None else argv
        calls.append((argv, os.environ.get("AUTOSAM_TEST_FLAG"), torch.get_num_threads()))
        print(json.dumps({"argv": argv}))
        return 0 if argv[-1] == "good" else 1

    monkeypatch.setattr(autosam_hf.training.cli, "main", main)
    monkeypatch.delenv("AUTOSAM_TEST_FLAG", raising=False)
    threads, argv = torch.get_num_threads(), list(sys.argv)
    result = run_python(
        ["-m", "autosam_hf.train", "good"], in_process=True, threads=threads + 1, env={"AUTOSAM_TEST_FLAG": "1"}
    )
    assert calls == [(["good"], "1", threads + 1)] and json.loads(result.stdout) == {"argv": ["good"]}
    assert "AUTOSAM_TEST_FLAG" not in os.environ and torch.get_num_threads() == threads and sys.argv == argv

    run_training(["-m", "autosam_hf.train", "good"], in_process=True)
    assert len(calls) == 2
    with pytest.raises(RuntimeError, match="python -m autosam_hf.train bad exited with status 1"):
        run_training(["-m", "autosam_hf.train", "bad"], in_process=True)
    with pytest.raises(ValueError, match="'-m autosam_hf.evaluation' is not the training script"):
        run_training(["-m", "autosam_hf.evaluation"], in_process=True)
    with pytest.raises(ValueError, match="is not `-m <module>`"):
        run_python(["benchmarks/run_all.py"], in_process=True)


def test_the_benchmark_pages_are_what_the_results_give():
    """docs/benchmarks and the results' index are generated (`python -m benchmarks.tables --write`): a result or a
    template changed without regenerating them fails here, so no page can drift from its result files."""
    from benchmarks.tables import render_pages

    pages = render_pages()
    assert {path.name for path in pages if path.parent.name == "benchmarks"} >= {"README.md", "learning.md"}
    stale = [
        str(path.relative_to(REPO_ROOT))
        for path, text in pages.items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"{stale} differ from what the results give: run python -m benchmarks.tables --write"


def test_a_changed_result_number_changes_its_page(tmp_path, monkeypatch):
    """The figures in a page's prose and tables are read from the result files, not copied: change one number in
    a result and the page shows the new one, in its table and in its text."""
    import shutil

    import benchmarks.common
    from benchmarks.tables import TEMPLATES_DIR, render_page

    results = REPO_ROOT / "benchmarks" / "results"
    for experiment in ("inference", "training", "loader", "cache_precision", "gpu_path", "click_training", "encoder"):
        shutil.copytree(results / experiment, tmp_path / experiment, ignore=shutil.ignore_patterns("*.png"))
    template = (TEMPLATES_DIR / "cpu-speed.md").read_text()
    before, inputs = render_page(template)
    assert "inference/epyc_avx2_1thread" in inputs and "**Full inference ≥ 1.6× the official: met —" in before

    path = tmp_path / "inference" / "epyc_avx2_1thread.json"
    inference = json.loads(path.read_text())
    inference["modes"]["autosam fp32"]["speedup_vs_reference"] = 1.234
    path.write_text(json.dumps(inference))
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    after, _ = render_page(template)
    assert after != before
    assert "**Full inference ≥ 1.6× the official: not met —\n  1.23×**" in after  # the prose
    assert "| autosam fp32 | 11.171 | 0.09 | 2210 | 1.0× | 1.2× |" in after  # the table


def test_a_page_placeholder_that_fails_names_itself(tmp_path, monkeypatch):
    import benchmarks.common
    from benchmarks.tables import render_page

    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    with pytest.raises(
        ValueError, match=r'\{\{ r\("training/none"\)\["batch_size"\] \}\}: FileNotFoundError: no .*none.json'
    ):
        render_page('Batch {{ r("training/none")["batch_size"] }}.')
