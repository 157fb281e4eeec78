"""g's encoders (`model/backbones.py`): HarDNet-85's and timm backbones' ImageNet weights, timm's strides 4, 8, 16
and the prompt decoder built from their channels (timm replaced by a fake: no download, no timm needed)."""

import sys
import types

import pytest
import torch
from torch import nn

from autosam_hf import AutoSamForSegmentation
from autosam_hf.model.backbones import TimmFeatures
from autosam_hf.model.hardnet import HarDNet85Features


def test_from_sam_loads_hardnet_backbone_weights(tiny_sam_config, tmp_path):
    torch.manual_seed(0)
    source = HarDNet85Features()
    path = tmp_path / "hardnet85.pth"
    torch.save(source.state_dict(), path)
    model = AutoSamForSegmentation.from_sam(tiny_sam_config, prompt_input_size=64, backbone_weights=path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.prompt_generator.encoder.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="hardnet85.pth"):
        model.load_backbone_weights(True)


# ----------------------------------------------------------------------------------------------- timm backbones
class FakeFeatureInfo:
    def __init__(self, reductions, channels):
        self._reductions, self._channels = list(reductions), list(channels)

    def reduction(self):
        return self._reductions

    def channels(self):
        return self._channels


class FakeTimmFeatures(nn.Module):
    """A timm `features_only` model: a conv per stage, each halving the resolution."""

    def __init__(self, strides, channels, out_indices=None):
        super().__init__()
        self.out_indices = tuple(range(len(strides))) if out_indices is None else tuple(out_indices)
        stages, previous = [], 3
        for out_channels in channels:
            stages.append(nn.Conv2d(previous, out_channels, kernel_size=3, stride=2, padding=1))
            previous = out_channels
        self.stages = nn.ModuleList(stages)
        self.feature_info = FakeFeatureInfo(
            [strides[i] for i in self.out_indices], [channels[i] for i in self.out_indices]
        )

    def forward(self, pixel_values):
        outputs, hidden_states = [], pixel_values
        for index, stage in enumerate(self.stages):
            hidden_states = stage(hidden_states)
            if index in self.out_indices:
                outputs.append(hidden_states)
        return outputs


FAKE_TIMM_MODELS = {
    "fakenet": ((2, 4, 8, 16, 32), (8, 12, 16, 24, 40)),
    "fakenet_no16": ((2, 4, 8, 32), (8, 12, 16, 40)),
}


@pytest.fixture
def fake_timm(monkeypatch):
    module = types.ModuleType("timm")
    module.calls = []

    def create_model(name, features_only=False, pretrained=False, out_indices=None, pretrained_cfg_overlay=None):
        module.calls.append(
            dict(name=name, features_only=features_only, pretrained=pretrained, out_indices=out_indices)
        )
        if pretrained_cfg_overlay is not None:
            module.calls[-1]["pretrained_cfg_overlay"] = pretrained_cfg_overlay
        if name not in FAKE_TIMM_MODELS:
            raise RuntimeError(f"Unknown model ({name})")
        torch.manual_seed(1234 if pretrained else 0)  # "pretrained" weights: the same every time
        features = FakeTimmFeatures(*FAKE_TIMM_MODELS[name], out_indices=out_indices)
        if pretrained and pretrained_cfg_overlay:  # timm reads the weights from the file instead of the Hub
            features.load_state_dict(torch.load(pretrained_cfg_overlay["file"], weights_only=True))
        return features

    module.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", module)
    return module


def test_timm_features_tap_strides_4_8_16(fake_timm):
    features = TimmFeatures("fakenet")
    assert fake_timm.calls[-1] == dict(name="fakenet", features_only=True, pretrained=False, out_indices=(1, 2, 3))
    assert features.feature_channels == (12, 16, 24)
    outputs = features(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in outputs] == [(2, 12, 16, 24), (2, 16, 8, 12), (2, 24, 4, 6)]


def test_timm_backbone_builds_prompt_decoder_from_channels(fake_timm, tiny_sam_config):
    model = AutoSamForSegmentation.from_sam(tiny_sam_config, prompt_input_size=64, backbone="fakenet")
    generator = model.prompt_generator
    assert isinstance(generator.encoder, TimmFeatures)
    assert generator.up16to8.convs[0][0].in_channels == 24 + 16
    assert generator.up8to4.convs[0][0].in_channels == 16 + 12
    assert generator.head.in_channels == 12 and generator.head.out_channels == 32
    outputs = model(torch.randn(2, 3, 24, 24))
    assert outputs.prompt_embeddings.shape == (2, 32, 12, 12)
    assert outputs.logits.shape == (2, 1, 48, 48)

    model.load_backbone_weights(True)
    assert fake_timm.calls[-1]["pretrained"] is True
    torch.manual_seed(1234)
    pretrained = FakeTimmFeatures(*FAKE_TIMM_MODELS["fakenet"], out_indices=(1, 2, 3))
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(generator.encoder.model.state_dict()[name], tensor), name


def test_timm_backbone_weights_from_a_file(fake_timm, tiny_sam_config, tmp_path):
    """Offline ImageNet weights for a timm g: timm reads the file (`pretrained_cfg_overlay`), not the Hub."""
    torch.manual_seed(99)
    saved = FakeTimmFeatures(*FAKE_TIMM_MODELS["fakenet"], out_indices=(1, 2, 3)).state_dict()
    torch.save(saved, tmp_path / "fakenet.pth")
    model = AutoSamForSegmentation.from_sam(
        tiny_sam_config, prompt_input_size=64, backbone="fakenet", backbone_weights=tmp_path / "fakenet.pth"
    )
    assert fake_timm.calls[-1]["pretrained"] is True
    assert fake_timm.calls[-1]["pretrained_cfg_overlay"] == {"file": str(tmp_path / "fakenet.pth")}
    loaded = model.prompt_generator.encoder.model.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in saved.items())
    with pytest.raises(ValueError, match="no such file .*missing.pth"):
        model.load_backbone_weights(tmp_path / "missing.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Could not load fakenet weights from .*broken.pth"):
        model.load_backbone_weights(tmp_path / "broken.pth")


def test_timm_backbone_errors(fake_timm, monkeypatch):
    with pytest.raises(ValueError, match="not_a_model"):
        TimmFeatures("not_a_model")
    with pytest.raises(ValueError, match=r"fakenet_no16.*\[16\]"):
        TimmFeatures("fakenet_no16")
    monkeypatch.setitem(sys.modules, "timm", None)  # timm not installed
    with pytest.raises(ImportError, match=r"autosam-hf\[timm\]"):
        TimmFeatures("fakenet")
