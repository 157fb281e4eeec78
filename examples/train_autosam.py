"""Train AutoSAM on Kvasir-SEG: the short example to copy and edit.

    accelerate launch examples/train_autosam.py                       # default recipe, real SAM ViT-B
    accelerate launch examples/train_autosam.py --recipe paper        # the paper's exact training
    accelerate launch examples/train_autosam.py --max_train_steps 10  # any autosam-train flag overrides

Everything below is ordinary `autosam-train` flags; see `python -m autosam_hf.train --help`. Precision is chosen
for the machine (`--mixed_precision auto`: bf16 on recent GPUs and on CPUs with native bf16, else fp32).
"""

import sys

from autosam_hf.train import main

if __name__ == "__main__":
    sys.exit(
        main(
            [
                "--sam",
                "facebook/sam-vit-base",  # or MedSAM, a transformers folder, or sam_vit_b_01ec64.pth
                "--preset",
                "kvasir",  # folder layout, g's input size 352, the dataset's augmentation
                "--data",
                "../shared/data/kvasir",  # train/ val/ test/ with images/ + masks/
                "--output_dir",
                "runs/kvasir",
                "--stage",
                "all",  # g through the frozen SAM, then the surrogate h
                *sys.argv[1:],
            ]
        )
    )
