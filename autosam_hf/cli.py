"""The command-line conventions every `autosam-*` command shares (eval, predict, publish, train).

- **Option names**: each option is declared once in snake_case (`--output_dir`), as in transformers' example
  scripts, and is accepted in kebab-case too (`--output-dir`); `--help` shows both. Prefixes are not expanded
  (`--out` is an error, not `--output_dir`), so adding an option never changes what an old command line means.
- **Common options**: `--model` (with `--revision`), `--output_dir`, `--device` and `--dtype`, the last two resolved
  by `autosam_hf.runtime`.
- **Runtime**: every command first calls `runtime.keep_freed_cpu_memory()` (glibc only; AUTOSAM_KEEP_FREED_CPU_MEMORY=0
  opts out), which made SAM's image encoder 1.3× faster on a CPU.
- **Errors**: bad input, which library code reports as `ValueError` or `OSError` (`FileNotFoundError`, ...) naming
  the argument, file or model at fault, ends the command with `prog: error: <one line>` on stderr and exit status
  2, without a traceback; so do argparse's own errors. A command may name errors that mean "the input was fine but
  the operation failed" (publish: the Hub refused the upload or could not be reached): same format, exit status 1.
  Anything else is a bug and keeps its traceback.

A command is written as:

    parser = ArgumentParser(prog="autosam-x", description="...")
    add_model_arguments(parser)
    add_output_dir_argument(parser, required=True, help="...")
    add_runtime_arguments(parser)
    parser.add_argument("--batch_size", type=positive_int, default=8)   # also --batch-size

    def run(args: argparse.Namespace) -> int:
        ...                                # raise ValueError("--batch_size ...") for bad input
        return 0

    def main(argv: Sequence[str] | None = None) -> int:
        return parser.run(run, argv)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import NoReturn

import torch

from .model.sam_attention import RELATIVE_POSITION_KERNELS
from .runtime import DTYPES, keep_freed_cpu_memory, resolve_autocast_dtype, resolve_device, speed_up_image_encoder

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# What library code raises for bad arguments, files, data or models (file and download errors are OSErrors).
INPUT_ERRORS = (ValueError, OSError)


def one_line(error: BaseException | str) -> str:
    """An error message on one line (some libraries' messages span several)."""
    lines = [line.strip() for line in str(error).splitlines()]
    return " ".join(line for line in lines if line) or type(error).__name__


def _with_kebab_aliases(names: Sequence[str]) -> list[str]:
    """`("--output_dir",)` → `["--output_dir", "--output-dir"]`; positional names and short flags are kept."""
    aliases = []
    for name in names:
        if not name.startswith("--"):
            continue
        if "-" in name[2:]:
            raise ValueError(f"Declare option {name} in snake_case; its kebab-case alias is added automatically.")
        alias = "--" + name[2:].replace("_", "-")
        if alias != name and alias not in names:
            aliases.append(alias)
    return [*names, *aliases]


class _KebabAliases:
    """`add_argument` of a parser or group, adding the kebab-case alias of every snake_case option."""

    def add_argument(self, *name_or_flags: str, **kwargs) -> argparse.Action:
        return super().add_argument(*_with_kebab_aliases(name_or_flags), **kwargs)

    def add_argument_group(self, *args, **kwargs) -> argparse._ArgumentGroup:
        group = _ArgumentGroup(self, *args, **kwargs)
        self._action_groups.append(group)
        return group

    def add_mutually_exclusive_group(self, **kwargs) -> argparse._MutuallyExclusiveGroup:
        group = _MutuallyExclusiveGroup(self, **kwargs)
        self._mutually_exclusive_groups.append(group)
        return group


class _ArgumentGroup(_KebabAliases, argparse._ArgumentGroup):
    pass


class _MutuallyExclusiveGroup(_KebabAliases, argparse._MutuallyExclusiveGroup):
    pass


class ArgumentParser(_KebabAliases, argparse.ArgumentParser):
    """`argparse.ArgumentParser` with this project's conventions (module docstring): kebab-case aliases, no prefix
    matching, and `run`, which turns bad input into `prog: error: <one line>` and exit status 2.

    Args:
        failures: exception types that mean the operation failed on good input; they exit with status 1.
        Other arguments are `argparse.ArgumentParser`'s.
    """

    def __init__(self, *args, failures: tuple[type[BaseException], ...] = (), **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.failures = failures

    def fail(self, error: BaseException | str, status: int = EXIT_BAD_INPUT) -> NoReturn:
        """Print `prog: error: <one line>` on stderr and exit with `status` (SystemExit)."""
        self.exit(status, f"{self.prog}: error: {one_line(error)}\n")

    def run(self, command: Callable[[argparse.Namespace], int | None], argv: Sequence[str] | None = None) -> int:
        """Parse `argv` (default: the command line) and return `command(args)` (None counts as 0).

        Raises:
            SystemExit: 2 for bad arguments or bad input (`INPUT_ERRORS`), 1 for `failures`, after printing
                `prog: error: <one line>`.
        """
        args = self.parse_args(argv)
        keep_freed_cpu_memory()  # large CPU tensors reuse freed memory instead of page-faulting it in anew
        try:
            status = command(args)
        except self.failures as error:
            self.fail(error, EXIT_FAILED)
        except INPUT_ERRORS as error:
            self.fail(error, EXIT_BAD_INPUT)
        return 0 if status is None else status


def int_in_range(low: int, high: int | None = None):
    """An argparse `type` for integers in [low, high] (no upper bound without `high`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            expected = f"an integer in {low}..{high}" if high is not None else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be in {low}..{high}, got {value}" if high is not None else f"must be >= {low}, got {value}"
            )
        return value

    return parse


# argparse `type`s of counts: at least 1 (`--batch_size`, ...), or at least 0 (`--num_workers`).
positive_int = int_in_range(1)
non_negative_int = int_in_range(0)


def add_model_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "folder or Hub id of an AutoSAM checkpoint (full or adapter)",
    revision: bool = True,
) -> None:
    """`--model` (required) and, with `revision`, `--revision` (its Hub revision)."""
    parser.add_argument("--model", required=True, help=help)
    if revision:
        parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")


def add_output_dir_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str,
    default: str | None = None,
    required: bool = False,
) -> None:
    """`--output_dir`: where the command writes what it makes."""
    parser.add_argument("--output_dir", default=default, required=required, help=help)


def add_runtime_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--device` and `--dtype`; `resolve_runtime` turns them into a device and an autocast dtype."""
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help="compute dtype: auto = the fastest native one (bfloat16/float16 autocast on GPUs, bfloat16 on CPUs with "
        "AMX or AVX-512-BF16, else float32)",
    )


# How SAM's frozen image encoder runs: the same two options in autosam-predict, autosam-eval and autosam-train.
ATTENTION_KERNEL_HELP = (
    "SAM's ViT attention: dense (its relative-position bias as an (H·W)² mask, default) or folded (the bias folded "
    "into query and key: no mask, more arithmetic; for large batches on GPUs)"
)
COMPILE_ENCODER_HELP = "run SAM's image encoder under torch.compile (the first batch compiles it)"


def add_encoder_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--attention_kernel` and `--compile_encoder`: how SAM's frozen image encoder runs (`apply_encoder_arguments`)."""
    parser.add_argument(
        "--attention_kernel", default="dense", choices=RELATIVE_POSITION_KERNELS, help=ATTENTION_KERNEL_HELP
    )
    parser.add_argument("--compile_encoder", action="store_true", help=COMPILE_ENCODER_HELP)


def apply_encoder_arguments(args: argparse.Namespace, model: torch.nn.Module) -> torch.nn.Module:
    """`model` (an `AutoSamForSegmentation`) with the encoder settings of `add_encoder_arguments`."""
    return speed_up_image_encoder(model, args.attention_kernel, args.compile_encoder)


def resolve_runtime(args: argparse.Namespace) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None for float32) of `--device` and `--dtype`.

    Raises:
        ValueError: an unknown or unavailable device, or an unknown dtype.
    """
    device = resolve_device(args.device)
    return device, resolve_autocast_dtype(args.dtype, device)


def configure_logging() -> None:
    """INFO messages of every library on stderr, one line each, naming their logger."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "INPUT_ERRORS",
    "ArgumentParser",
    "add_encoder_arguments",
    "add_model_arguments",
    "add_output_dir_argument",
    "add_runtime_arguments",
    "apply_encoder_arguments",
    "configure_logging",
    "one_line",
    "int_in_range",
    "non_negative_int",
    "positive_int",
    "resolve_runtime",
]
