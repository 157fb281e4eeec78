"""Shared fixtures: a tiny SAM (transformers' own test sizes), its processor and a tiny AutoSAM around it.

Shapes with these fixtures: `pixel_values` (B, 3, 24, 24), `prompt_pixel_values` (B, 3, 64, 64), SAM image/prompt
embeddings (B, 32, 12, 12), logits and labels (B, 1 | -, 48, 48).
"""

import os
import re
import socket
import sys

# Tests never touch the network: Hub look-ups fail fast instead of hanging or downloading.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# pytest-xdist workers (pyproject's `-n 2`) share the cores rather than each starting a thread per core: set before
# torch starts its thread pool, and inherited by the processes tests start.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import SamConfig  # noqa: E402

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# Tests start processes the way the benchmarks do: in a process group of their own, killed whole on a time-out.
sys.path.insert(0, str(REPO_ROOT))  # the `benchmarks` package, whatever the directory pytest started in
from benchmarks.process_group import run_command  # noqa: E402, F401


def pytest_collection_modifyitems(items):
    """Slow tests first (a stable sort). pytest-xdist's worksteal scheduling (pyproject) then starts the long
    end-to-end runs at once and lets short tests fill both workers' ends, instead of a long run that starts late
    finishing the suite alone on one worker. A module whose slow test moves ahead builds its module fixtures twice
    (a tiny SAM, the hub workspace: seconds); keeping modules whole queues the longest runs behind other slow
    modules (one clean-clone CI run each on this project's AMD EPYC, whose speed varies: 7:08 against 6:15)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def make_tiny_sam_config() -> SamConfig:
    return SamConfig(
        vision_config=dict(
            image_size=24,
            patch_size=2,
            hidden_size=36,
            num_hidden_layers=2,
            num_attention_heads=4,
            output_channels=32,
            num_pos_feats=16,
            global_attn_indexes=[1],
            window_size=4,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=24, patch_size=2, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32
        ),
    )


def make_tiny_processor(prompt_size: int | None = 64) -> AutoSamImageProcessor:
    """SAM canvas 24², label canvas 48² and, by default, a prompt canvas at the tiny model's g input size (64²)."""
    return AutoSamImageProcessor(
        size={"longest_edge": 24},
        pad_size={"height": 24, "width": 24},
        mask_size={"longest_edge": 48},
        mask_pad_size={"height": 48, "width": 48},
        prompt_size=prompt_size,
    )


def make_tiny_model(seed: int = 0, **config_overrides) -> AutoSamForSegmentation:
    """Seeded tiny AutoSAM (HarDNet-85 g at prompt_input_size=64, with h), in the mode `from_sam` leaves it.

    SAM's random init leaves its mask decoder nearly silent (logits ~1e-5, zero biases and relative positions), so
    every SAM weight is perturbed (seeded): outputs then depend visibly on the image embeddings and the prompt.
    """
    config_overrides.setdefault("prompt_input_size", 64)
    torch.manual_seed(seed)
    model = AutoSamForSegmentation.from_sam(make_tiny_sam_config(), **config_overrides)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.sam.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def free_port() -> int:
    """A TCP port free now: tests that start process groups must not collide when pytest-xdist runs them together."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_error_line(main, argv: list[str], capsys, prog: str) -> str:
    """The last line a command prints when it must stop on bad input: exit status 2, no traceback, and the line
    `<prog>: error: ...` (after any progress bar of the model's loading)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    line = re.split(r"[\r\n]", error.rstrip("\n"))[-1]
    assert line.startswith(f"{prog}: error: ")
    return line


@pytest.fixture
def tiny_sam_config() -> SamConfig:
    return make_tiny_sam_config()


@pytest.fixture
def tiny_processor() -> AutoSamImageProcessor:
    return make_tiny_processor()


@pytest.fixture
def tiny_model() -> AutoSamForSegmentation:
    return make_tiny_model()


SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The read-only real data sets (`<set>/<split>/{images,masks}`), next to the repository.

    A clone without them skips the tests that read them; CI sets AUTOSAM_REQUIRE_DATA=1 so that missing data fails.
    """
    if not SHARED_DATA_DIR.is_dir():
        message = (
            f"real data not found at {SHARED_DATA_DIR}: tests that read it expect the shared data sets next to the "
            "repository (../shared/data, see its README.md)"
        )
        skip_unless_required(message, "AUTOSAM_REQUIRE_DATA")
    return SHARED_DATA_DIR


def skip_unless_required(message: str, variable: str) -> None:
    """Skip with `message`, or fail where CI sets `variable`=1 (what it must run: the data, ONNX, the browser)."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{message} ({variable}=1 requires them)")
    pytest.skip(message)
