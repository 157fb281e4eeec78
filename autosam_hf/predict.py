"""`python -m autosam_hf.predict ...` runs `autosam-predict` (`autosam_hf.inference.cli`), under `accelerate launch -m`
too; the code lives in `autosam_hf.inference`."""

from .inference.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
