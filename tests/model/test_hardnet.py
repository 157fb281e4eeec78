"""HarDNet-85, g's encoder: feature strides and channels, harmonic links, loading ImageNet weights."""

import pytest
import torch

from autosam_hf.model.hardnet import ConvLayer, HarDBlock, HarDNet85Features, harmonic_links, load_hardnet_weights


# ----------------------------------------------------------------------------------------------- HarDNet-85
def test_hardnet_feature_shapes_and_strides():
    torch.manual_seed(0)
    features = HarDNet85Features().eval()
    assert HarDNet85Features.feature_strides == (4, 8, 16)
    with torch.no_grad():
        outputs = features(torch.randn(1, 3, 32, 64))  # non-square; 352² is checked through g below
    assert [tuple(f.shape) for f in outputs] == [(1, 192, 8, 16), (1, 320, 4, 8), (1, 720, 2, 4)]
    # With the stride-32 stage this module leaves out (HarDBlock(720, growth 256, 4 layers) + 1×1 conv to 1280),
    # the trunk has HarDNet-85's 35.4M backbone parameters (36.7M with the 1000-class classifier, as published).
    stage32 = HarDBlock(720, 256, 1.7, 4)
    stage32_conv = ConvLayer(stage32.out_channels, 1280, kernel_size=1)
    trunk = sum(p.numel() for module in (features, stage32, stage32_conv) for p in module.parameters())
    assert round(trunk / 1e5) == 354
    assert round((trunk + 1280 * 1000 + 1000) / 1e5) == 367


def test_harmonic_links_follow_the_paper():
    # Layer k links to k - 2^n for every 2^n dividing k; width = growth × 1.7^(links - 1), rounded to even.
    assert harmonic_links(0, 96, 24, 1.7) == (96, 0, [])
    assert harmonic_links(1, 96, 24, 1.7) == (24, 96, [0])
    assert harmonic_links(2, 96, 24, 1.7) == (40, 24 + 96, [1, 0])  # 24 × 1.7 = 40.8 → 40
    assert harmonic_links(3, 96, 24, 1.7) == (24, 40, [2])
    assert harmonic_links(4, 96, 24, 1.7) == (70, 24 + 40 + 96, [3, 2, 0])  # 24 × 1.7² = 69.36 → 70
    # 24 × 1.7³ = 117.9 → 118; inputs: layer 7 (24), layer 6 (links 5, 4 → 40), layer 4 (70), the block input.
    assert harmonic_links(8, 96, 24, 1.7) == (118, 24 + 40 + 70 + 96, [7, 6, 4, 0])


def test_load_hardnet_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    source = HarDNet85Features()
    with torch.no_grad():
        for buffer in source.buffers():
            if buffer.is_floating_point():
                buffer.add_(torch.rand_like(buffer))
    state_dict = {f"module.{name}": tensor for name, tensor in source.state_dict().items()}
    # What the authors' hardnet85.pth also holds: the stride-32 stage and the classifier.
    state_dict["module.base.16.layers.0.conv.weight"] = torch.randn(256, 720, 3, 3)
    state_dict["module.base.18.conv.weight"] = torch.randn(1280, 1024, 1, 1)
    state_dict["module.base.19.3.weight"] = torch.randn(1000, 1280)
    path = tmp_path / "hardnet85.pth"
    torch.save({"state_dict": state_dict}, path)

    torch.manual_seed(1)
    target = HarDNet85Features()
    load_hardnet_weights(target, path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name

    wrong = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.randn(64, 3, 7, 7)}, wrong)
    with pytest.raises(ValueError, match="resnet.pth is not a HarDNet-85 checkpoint.*missing"):
        load_hardnet_weights(HarDNet85Features(), wrong)
    reshaped = dict(state_dict, **{"module.base.0.conv.weight": torch.randn(32, 3, 3, 3)})  # e.g. HarDNet-68
    torch.save(reshaped, tmp_path / "hardnet68.pth")
    with pytest.raises(ValueError, match=r"hardnet68.pth.*base.0.conv.weight is \(32, 3, 3, 3\)"):
        load_hardnet_weights(HarDNet85Features(), tmp_path / "hardnet68.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint" * 10)
    for name in ("tensor.pth", "garbage.pth"):
        with pytest.raises(ValueError, match=name):
            load_hardnet_weights(HarDNet85Features(), tmp_path / name)
