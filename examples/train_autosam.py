"""Train AutoSAM on Kvasir-SEG: the short example to copy and edit.

    accelerate launch examples/train_autosam.py                      # paper recipe, real SAM ViT-B
    accelerate launch examples/train_autosam.py --max_train_steps 10 # any autosam-train flag overrides

Everything below is ordinary `autosam-train` flags; see `python -m autosam_hf.train --help`.
"""

import sys

from autosam_hf.train import main

if __name__ == "__main__":
    main(
        [
            "--sam",
            "facebook/sam-vit-base",  # or a transformers folder, or sam_vit_b_01ec64.pth
            "--preset",
            "kvasir",  # layout, g input 352, augmentation, Adam 3e-4 / 1e-5, batch 10
            "--data",
            "../shared/data/kvasir",  # train/ val/ test/ with images/ + masks/
            "--output_dir",
            "runs/kvasir",
            "--stage",
            "all",  # g through frozen SAM, then the surrogate h
            "--mixed_precision",
            "bf16",
            *sys.argv[1:],
        ]
    )
