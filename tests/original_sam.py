"""Tiny SAM models built from the `segment-anything` package's own modules, for parity tests.

`import segment_anything` runs its predictor module, which needs torchvision (not a dependency here), so only
its `modeling` subpackage is imported, through a bare parent package.
"""

import importlib.util
import sys
import types

import torch


def import_original_sam_modeling():
    # Another package (MONAI) may have imported segment_anything.modeling already, its parent's failed import
    # leaving the subpackage behind: the bare parent is what is missing then too.
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules.setdefault("segment_anything", package)
    import segment_anything.modeling as modeling

    return modeling


def build_tiny_original_sam(seed: int = 0) -> torch.nn.Module:
    """A random-init original `Sam`: ViT of 2 blocks (one windowed, one global) on 32×32 images, patch 4."""
    modeling = import_original_sam_modeling()
    torch.manual_seed(seed)
    embed_dim, image_size, patch_size, prompt_dim = 48, 32, 4, 32
    image_encoder = modeling.ImageEncoderViT(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=2,
        num_heads=4,
        mlp_ratio=4.0,
        out_chans=prompt_dim,
        qkv_bias=True,
        norm_layer=lambda dim: torch.nn.LayerNorm(dim, eps=1e-6),
        use_rel_pos=True,
        window_size=3,
        global_attn_indexes=(1,),
    )
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=prompt_dim,
        image_embedding_size=(image_size // patch_size, image_size // patch_size),
        input_image_size=(image_size, image_size),
        mask_in_chans=8,
    )
    mask_decoder = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=8),
        transformer_dim=prompt_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    )
    sam = modeling.Sam(image_encoder, prompt_encoder, mask_decoder)
    # Random init leaves zeros in some weights (rel-pos, pos_embed): perturb everything so parity is meaningful.
    with torch.no_grad():
        for parameter in sam.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return sam.eval()
