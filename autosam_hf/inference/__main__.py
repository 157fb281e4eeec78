"""`python -m autosam_hf.inference ...` runs `autosam-predict`."""

from .cli import main

raise SystemExit(main())
