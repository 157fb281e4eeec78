"""The hub tests' shared workspace, built once for the three modules that read it."""

import numpy as np
import PIL.Image
import pytest
import torch

from autosam_hf import AutoSamImageProcessor
from autosam_hf.hub import publish
from hub.workspace import (
    ADAPTER_REPO_ID,
    BASE_SAM_ID,
    FULL_REPO_ID,
    add_to_hub_cache,
    build_trained_folder,
    reference_logits,
    save_base_sam,
)


@pytest.fixture(scope="package")
def workspace(tmp_path_factory):
    """Trained folder, its full and adapter-size exports (dry runs), an offline Hub cache holding both exports
    and the base SAM, a test image and the trained model's reference outputs on it."""
    root = tmp_path_factory.mktemp("hub")
    base_sam_dir = root / "base_sam"
    save_base_sam(base_sam_dir)
    image = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    model = build_trained_folder(root / "trained", base_sam_dir, image)

    full = publish(root / "trained", "kvasir", FULL_REPO_ID, dry_run=True, output_dir=root / "exports" / "full")
    adapter = publish(
        root / "trained", "kvasir", ADAPTER_REPO_ID, adapter=True, dry_run=True, output_dir=root / "exports" / "adapter"
    )

    cache = root / "hub_cache"
    add_to_hub_cache(cache, BASE_SAM_ID, base_sam_dir)
    add_to_hub_cache(cache, FULL_REPO_ID, full)
    add_to_hub_cache(cache, ADAPTER_REPO_ID, adapter)

    PIL.Image.fromarray(image).save(root / "image.png")
    processor = AutoSamImageProcessor.from_pretrained(full)
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    expected = reference_logits(model, pixel_values)
    torch.save({"pixel_values": pixel_values, **expected}, root / "reference.pt")
    return dict(
        root=root,
        trained=root / "trained",
        full=full,
        adapter=adapter,
        cache=cache,
        image=image,
        pixel_values=pixel_values,
        expected=expected,
        model=model,
    )
