"""`python -m autosam_hf.train` / `accelerate launch -m autosam_hf.train`: the `autosam-train` command, which lives
in `autosam_hf.training.cli`."""

from .training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
