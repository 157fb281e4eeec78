"""`python -m autosam_hf.evaluation ...` runs `autosam-eval`."""

from .cli import main

raise SystemExit(main())
