"""AutoSamConfig: validation, the prompt shape it derives from SAM, save/load."""

import json

import pytest
from transformers import (
    AutoConfig,
    SamConfig,
)

from autosam_hf import AutoSamConfig
from autosam_hf.model.configuration_autosam import canonical_mode


# ----------------------------------------------------------------------------------------------- configuration
def test_config_rejects_bad_values(tiny_sam_config):
    with pytest.raises(ValueError, match="mode must be one of"):
        AutoSamConfig(sam_config=tiny_sam_config.to_dict(), default_mode="sam_points")
    for bad_size in (16, 50, 100):
        with pytest.raises(ValueError, match="prompt_input_size"):
            AutoSamConfig(sam_config=tiny_sam_config.to_dict(), prompt_input_size=bad_size)
    with pytest.raises(ValueError, match="canvas_rule must be one of"):
        AutoSamConfig(sam_config=tiny_sam_config.to_dict(), canvas_rule="crop")


def test_config_prompt_embedding_shape(tiny_sam_config):
    assert AutoSamConfig(sam_config=tiny_sam_config.to_dict()).prompt_embedding_shape == (32, 12)
    assert AutoSamConfig(sam_config=SamConfig().to_dict()).prompt_embedding_shape == (256, 64)  # every released SAM


def test_config_round_trip(tiny_sam_config, tmp_path):
    fields = dict(
        backbone="resnet18",
        prompt_input_size=256,
        use_surrogate_decoder=False,
        bce_loss_weight=0.25,
        dice_loss_weight=2.0,
        mask_threshold=0.3,
        default_mode="surrogate",
        sam_name_or_path="facebook/sam-vit-base",
        sam_revision="main",
        canvas_rule="squash",
    )
    config = AutoSamConfig(sam_config=tiny_sam_config.to_dict(), **fields)
    config.save_pretrained(tmp_path)
    loaded = AutoSamConfig.from_pretrained(tmp_path)
    for name, value in fields.items():
        assert getattr(loaded, name) == value, name
    assert loaded.id2label == {0: "background", 1: "foreground"}
    assert loaded.label2id == {"background": 0, "foreground": 1}
    assert isinstance(loaded.sam_config, SamConfig)
    assert loaded.sam_config.to_dict() == config.sam_config.to_dict()
    assert loaded.prompt_embedding_shape == (32, 12)
    assert loaded.to_dict() == config.to_dict()  # every field, including ones added later
    assert isinstance(AutoConfig.from_pretrained(tmp_path), AutoSamConfig)


def test_modes_are_checked_by_name(tiny_sam_config, tmp_path):
    """Only the current mode names: "sam" (the name before the modes were named after what they run) is refused,
    in a saved config as in a call."""
    assert canonical_mode("autosam") == "autosam" and canonical_mode("surrogate") == "surrogate"
    for unknown in ("fast", "sam"):
        with pytest.raises(ValueError, match="mode must be one of"):
            canonical_mode(unknown)
    AutoSamConfig(sam_config=tiny_sam_config.to_dict()).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "default_mode": "sam"}))
    with pytest.raises(ValueError, match="got 'sam'"):
        AutoSamConfig.from_pretrained(tmp_path)
