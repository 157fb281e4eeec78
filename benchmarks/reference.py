"""The official AutoSAM code (github.com/talshaharabany/AutoSAM), timed as it runs, beside our figures of the same run.

    python -m benchmarks.reference --reference_dir /tmp/autosam_reference --part train      # one JSON line
    python -m benchmarks.reference --reference_dir /tmp/autosam_reference --part inference

Get the reference outside this repository (its code is never copied in), e.g.
`git clone https://github.com/talshaharabany/AutoSAM /tmp/autosam_reference` (checked at commit 3959d72).
Its data code needs torchvision (`torchvision.transforms.functional`); where torchvision is not installed, put a
copy on `--reference_pythonpath` (e.g. `pip install --no-deps --target /tmp/refdeps torchvision==<the version
made for your torch>`): it is added to this process only, never to the processes that run autosam_hf.

The reference runs in a process of its own: it ships its own `segment_anything` package (with `SamBatched`), which
would shadow the installed segment-anything. Its files are used unedited; at run time this process

  - keeps HarDNet-85's random initialisation: `torch.hub.load_state_dict_from_url` (its URL is dead, and nothing
    is downloaded) returns nothing, and `HarDNet.load_state_dict` ignores nothing (our g starts random too);
  - turns `.cuda()` (modules and tensors) into `.to(device)` when the device is not CUDA;
  - sets `train.args`, the module-global argument dict its `train_single_epoch` reads (its `__main__` sets it);
  - stubs `torchvision._meta_registrations` when torchvision's compiled operators cannot load (PyPI's CUDA build of
    torchvision beside a CPU torch); the reference only uses torchvision's image transforms.
SAM is `sam_model_registry["vit_b"]()` of the reference's own segment_anything: random weights, as ours.

What is timed (seconds per loop iteration, from a batch iterable that notes when the loop asks for each batch; an
iteration includes loading its batch through the reference's DataLoader without workers, its default `nW=0`, as
our training script's step includes its loader's):
  - `train`: its `train.train_single_epoch` over 1 + `--repeats` batches of its `PolypDataset` (Kvasir train,
    its polyp training augmentation, `ResizeLongestSide(1024)`), with its optimizer (Adam, lr 3e-4, weight decay
    1e-4). One iteration = its batch, resize to Idim, g = `ModelEmb` (HarDNet-85),
    `sam_call` (SAM's `preprocess`, i.e. the second normalisation of an already-normalised image, the ViT under
    no_grad, the prompt encoder, the mask decoder with gradients), `norm_batch`, `gen_step` (BCE + Tversky loss,
    backward; its Adam step every 4th iteration, `accumulation_steps=4`, which the 4th iteration includes).
  - `inference`: its `inference.inference_ds` under `torch.no_grad()` (as its `main`) over 1 + `--repeats` Kvasir
    test images at batch 1: g, `sam_call`, `norm_batch`, mask post-processing, thresholding and its Dice/IoU.
The first iteration is the warm-up; the figures are the median of the others (`common.timing_summary`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from unittest import mock

import torch

from benchmarks.common import DATA_DIR, machine, run_python_json, synchronizer, timing_summary

PARTS = ("train", "inference")
# The reference's command-line defaults (train.py's argparse) for the polyp task with HarDNet-85.
REFERENCE_ARGS = {"learning_rate": 0.0003, "WD": 1e-4, "depth_wise": False, "order": 85, "task": "polyp", "nW": 0}
# --tiny_sam: SAM's real canvas and mask decoder around a 1-layer ViT, for smoke runs (`_build_sam` of the reference).
TINY_SAM = dict(encoder_embed_dim=48, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=())


class TimedBatches:
    """The batches of `batches` (a DataLoader, or any iterable), handed to a loop one at a time. `seconds[i]` is the
    wall-clock time from the loop asking for batch i to it asking for the next one (or finishing): loading batch i,
    then one iteration of the loop's body, as in a loop over a DataLoader without workers."""

    def __init__(self, batches: Iterable, length: int, device: torch.device):
        self.batches, self.length, self.synchronize, self.seconds = batches, length, synchronizer(device), []

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        iterator = itertools.islice(self.batches, self.length)
        while True:
            started = time.perf_counter()
            batch = next(iterator, None)
            if batch is None:
                return
            yield batch
            self.synchronize()
            self.seconds.append(time.perf_counter() - started)


class Reference:
    """The reference's modules, imported from `reference_dir` (see the module docstring for what is patched)."""

    def __init__(self, reference_dir: Path, pythonpath: Sequence[str] = ()):
        self.directory = Path(reference_dir).resolve()
        if not (self.directory / "train.py").is_file() or not (self.directory / "segment_anything").is_dir():
            raise FileNotFoundError(f"{self.directory} is not a checkout of talshaharabany/AutoSAM (no train.py)")
        sys.path[:0] = [str(self.directory), *pythonpath]
        self.patches: list[str] = []
        self._import_torchvision()
        segment_anything = importlib.import_module("segment_anything")
        if not Path(segment_anything.__file__).resolve().is_relative_to(self.directory):
            raise ImportError(f"segment_anything came from {segment_anything.__file__}, not the reference's copy")
        self.train = importlib.import_module("train")
        self.inference = importlib.import_module("inference")
        self.model_single = importlib.import_module("models.model_single")
        self.hardnet = importlib.import_module("models.hardnet")
        self.polyp = importlib.import_module("dataset.polyp")
        self.tfs = importlib.import_module("dataset.tfs")
        self.build_sam = importlib.import_module("segment_anything.build_sam")
        self.transforms = importlib.import_module("segment_anything.utils.transforms")

    def _import_torchvision(self) -> None:
        try:
            importlib.import_module("torchvision")
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                "the reference's data code needs torchvision: install it, or give a folder holding it with "
                "--reference_pythonpath (pip install --no-deps --target DIR torchvision==<version for your torch>)"
            ) from error
        except RuntimeError as error:  # compiled operators missing: a CUDA torchvision beside a CPU torch
            if "torchvision::" not in str(error):
                raise
            for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
                del sys.modules[name]
            sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
            importlib.import_module("torchvision")
            self.patches.append(
                "torchvision._meta_registrations stubbed (its compiled operators cannot load with this torch)"
            )

    def commit(self) -> str | None:
        """The reference's git commit, when `reference_dir` is a git checkout."""
        result = subprocess.run(
            ["git", "-C", str(self.directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        return result.stdout.strip() or None

    @contextlib.contextmanager
    def patched(self, device: torch.device) -> Iterator[None]:
        """Random HarDNet weights instead of the download, and `.cuda()` → `.to(device)` off CUDA."""
        load_state_dict = self.hardnet.HarDNet.load_state_dict

        def keep_random_weights(module, state_dict, *args, **kwargs):
            return None if state_dict is None else load_state_dict(module, state_dict, *args, **kwargs)

        with contextlib.ExitStack() as stack:
            stack.enter_context(mock.patch.object(torch.hub, "load_state_dict_from_url", lambda *a, **k: None))
            stack.enter_context(mock.patch.object(self.hardnet.HarDNet, "load_state_dict", keep_random_weights))
            self.patches.append("HarDNet ImageNet download → random initialisation")
            if device.type != "cuda":
                to_device = lambda self, *args, **kwargs: self.to(device)  # noqa: E731
                stack.enter_context(mock.patch.object(torch.nn.Module, "cuda", to_device))
                stack.enter_context(mock.patch.object(torch.Tensor, "cuda", to_device))
                self.patches.append(f".cuda() → .to({device})")
            yield

    def build(self, prompt_size: int, device: torch.device, tiny_sam: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
        """Its g (`ModelEmb`, HarDNet-85) and its SAM (vit_b, or the tiny smoke-run encoder), on `device`."""
        args = {**REFERENCE_ARGS, "Idim": prompt_size}
        model = self.model_single.ModelEmb(args=args).to(device)
        if tiny_sam:
            sam = self.build_sam._build_sam(**TINY_SAM)
        else:
            sam = self.build_sam.sam_model_registry["vit_b"]()
        return model, sam.to(device=device)

    def polyp_loader(self, split: str, batch_size: int) -> torch.utils.data.DataLoader:
        """Its `PolypDataset` on Kvasir `split` through its DataLoader settings (train: its training augmentation,
        shuffled, drop_last; test: its test transform, in order; no workers, its default `nW`)."""
        transform_train, transform_test = self.tfs.get_polyp_transform()
        folder = DATA_DIR / "kvasir" / split
        dataset = self.polyp.PolypDataset(
            f"{folder / 'images'}/",
            f"{folder / 'masks'}/",
            train=split == "train",
            augmentations=transform_train if split == "train" else transform_test,
            sam_trans=self.transforms.ResizeLongestSide(1024),
        )
        train = split == "train"
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train)


def time_reference(
    reference: Reference, part: str, prompt_size: int, batch_size: int, repeats: int, device: torch.device, tiny: bool
) -> dict:
    """One part of the reference (see the module docstring), timed: median of `repeats` iterations after one."""
    torch.manual_seed(0)
    args = {**REFERENCE_ARGS, "Idim": prompt_size, "Batch_size": batch_size}
    with reference.patched(device):
        model, sam = reference.build(prompt_size, device, tiny)
        transform = reference.transforms.ResizeLongestSide(sam.image_encoder.img_size)
        run: Callable[[TimedBatches], object]
        if part == "train":
            optimizer = torch.optim.Adam(model.parameters(), lr=args["learning_rate"], weight_decay=args["WD"])
            loader = reference.polyp_loader("train", batch_size)
            reference.train.args = args  # the module global its loop reads
            reference.patches.append("train.args set (its __main__ block sets it)")

            def run(timed: TimedBatches) -> object:
                return reference.train.train_single_epoch(timed, model.train(), sam.eval(), optimizer, transform, 0)

        else:
            batch_size = 1
            loader = reference.polyp_loader("test", 1)

            def run(timed: TimedBatches) -> object:
                with torch.no_grad():  # as its main() does around inference_ds
                    return reference.inference.inference_ds(timed, model.eval(), sam, transform, 0, args)

        timed = TimedBatches(loader, 1 + repeats, device)
        run(timed)
    return {
        **timing_summary(timed.seconds[1:], batch_size),
        "batch_size": batch_size,
        "g": f"HarDNet-85 (ModelEmb) at {prompt_size}",
        "sam": "tiny encoder (smoke run)" if tiny else "vit_b",
        "warmup_seconds": timed.seconds[0],
    }


def measure_reference(
    reference_dir: str | Path,
    part: str,
    *,
    prompt_size: int,
    batch_size: int,
    repeats: int = 3,
    device: str = "cpu",
    tiny_sam: bool = False,
    pythonpath: Sequence[str] = (),
    keep_freed_cpu_memory: bool = False,
) -> dict:
    """Time one part of the reference in a fresh process; on failure, `{"error": why}` (the table then leaves the
    reference column out and says why). `keep_freed_cpu_memory`: its process first applies the allocator setting
    the `autosam-*` commands apply (`autosam_hf.runtime.keep_freed_cpu_memory`), its code still unedited: what
    separates our code's speed from that setting's."""
    arguments = [
        "-m",
        "benchmarks.reference",
        "--reference_dir",
        str(reference_dir),
        "--part",
        part,
        "--prompt_size",
        str(prompt_size),
        "--batch_size",
        str(batch_size),
        "--repeats",
        str(repeats),
        "--device",
        device,
        *(["--tiny_sam"] if tiny_sam else []),
        *(["--reference_pythonpath", *pythonpath] if pythonpath else []),
        *(["--keep_freed_cpu_memory"] if keep_freed_cpu_memory else []),
    ]
    try:
        return run_python_json(arguments, timeout=4 * 3600)
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as error:
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else type(error).__name__}


def measure_reference_runs(reference_dir: str | Path, part: str, **kwargs) -> dict[str, dict]:
    """`measure_reference` twice: as published (`"reference"`) and with our commands' allocator setting
    (`"reference_keep_freed_cpu_memory"`), whose ratio to ours is our code's alone. A second run in which the
    setting was not in effect (not glibc) counts as failed: `{"error": why}`, like any failed run."""
    runs = {}
    for key, kept in (("reference", False), ("reference_keep_freed_cpu_memory", True)):
        reference = measure_reference(reference_dir, part, keep_freed_cpu_memory=kept, **kwargs)
        if "error" not in reference and reference["keep_freed_cpu_memory"] != kept:
            reference = {"error": "the allocator setting did not take effect in the reference's process"}
        runs[key] = reference
    return runs


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    """The options a benchmark with a reference column takes."""
    parser.add_argument("--reference_dir", help="A checkout of talshaharabany/AutoSAM: time it in the same run.")
    parser.add_argument(
        "--reference_pythonpath", nargs="*", default=[], help="Folders the reference's process also imports from."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_reference_arguments(parser)
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--prompt_size", type=int, default=352, help="Idim: g's input size (352 for polyps).")
    parser.add_argument("--batch_size", type=int, default=3, help="Training batch (the reference's default: 3).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny_sam", action="store_true", help="A 1-layer ViT instead of vit_b (smoke runs).")
    parser.add_argument(
        "--keep_freed_cpu_memory", action="store_true", help="Apply the autosam-* commands' allocator setting first."
    )
    args = parser.parse_args()
    kept = False
    if args.keep_freed_cpu_memory:
        from autosam_hf.runtime import keep_freed_cpu_memory

        kept = keep_freed_cpu_memory()
    if not args.reference_dir:
        parser.error("--reference_dir is required")
    device = torch.device(args.device)
    reference = Reference(Path(args.reference_dir), args.reference_pythonpath)
    result = time_reference(
        reference, args.part, args.prompt_size, args.batch_size, args.repeats, device, args.tiny_sam
    )
    result |= {"machine": machine(), "reference_commit": reference.commit(), "patches": sorted(set(reference.patches))}
    result["keep_freed_cpu_memory"] = kept
    print(json.dumps(result))


if __name__ == "__main__":
    main()
