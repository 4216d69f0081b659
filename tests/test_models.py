"""The VGG-style backbone, its heads and the variant registry (tiny widths, CPU)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mer_lib.errors import ParameterError
from mer_lib.models import (VARIANTS, MerNet, Variant, build_model, get_variant, register_variant,
                            scaled_channels)

CORE = ("a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_core_variants_are_registered():
    assert set(CORE) <= set(VARIANTS)
    assert get_variant("a2m2e").concept_weight == 0.5 and get_variant("a2m2e").needs_midlevel
    assert get_variant("a2b2e").concept_weight == 0 and get_variant("a2b2e").head == "bottleneck"
    assert get_variant("aa2e").adversarial and get_variant("aa2e").head == "direct"
    assert get_variant("aa2b2e").adversarial and get_variant("aa2b2e").head == "bottleneck"
    assert not get_variant("a2e").adversarial
    assert get_variant("AA2E").label == "aA2E"
    assert get_variant("a2e").label == "A2E"


@pytest.mark.parametrize("variant", CORE)
@pytest.mark.parametrize("width,frames", [(0.0625, 63), (0.125, 16), (0.0625, 101)])
def test_output_shapes(variant, width, frames):
    model = build_model(variant, width).eval()
    x = torch.randn(3, 1, frames, 149)
    with torch.no_grad():
        emotions, concepts = model.forward_all(x)
        plain = model(x)
    assert emotions.shape == (3, 8)
    assert torch.equal(plain, emotions)
    if get_variant(variant).head == "bottleneck":
        assert concepts.shape == (3, 7)
    else:
        assert concepts is None
    assert model.variant == variant and model.width == width


def test_width_scales_channels():
    model = build_model("a2e", 0.0625)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16, 24, 32, 16]
    assert model.n_features == 16 == model.to_emotions.in_features
    assert scaled_channels(64, 1.0) == 64 and scaled_channels(64, 0.01) == 4
    assert [c.kernel_size for c in convs][0] == (5, 5) and convs[0].stride == (2, 2)
    assert convs[-1].kernel_size == (1, 1)


def test_architecture_bn_relu_pool_dropout():
    layers = list(build_model("a2e", 0.125).features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9
    for i in convs:  # every conv is followed by BatchNorm and ReLU
        assert isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2], nn.ReLU)
    pools = [m for m in layers if isinstance(m, nn.MaxPool2d)]
    drops = [m for m in layers if isinstance(m, nn.Dropout2d)]
    assert len(pools) == 2 and len(drops) == 2 and all(d.p == 0.3 for d in drops)


def test_kaiming_normal_init():
    torch.manual_seed(0)
    model = build_model("a2b2e", 0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    big = max(convs, key=lambda c: c.weight.numel())
    fan_in = big.weight[0].numel()
    assert big.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.03)
    assert abs(big.weight.mean().item()) < 0.1 * math.sqrt(2.0 / fan_in)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)


def test_emotion_head_weights():
    model = build_model("a2m2e", 0.0625)
    w = model.emotion_head_weights()
    assert w.shape == (8, 7) and torch.equal(w, model.to_emotions.weight)
    w += 1  # a copy, not a view
    assert not torch.equal(w, model.to_emotions.weight)
    with pytest.raises(ParameterError, match="direct head"):
        build_model("a2e", 0.0625).emotion_head_weights()


def test_bad_inputs_and_widths():
    model = build_model("a2e", 0.0625)
    with pytest.raises(ParameterError, match="frames"):
        model(torch.randn(2, 63, 149))
    with pytest.raises(ParameterError, match="frames"):
        model(torch.randn(2, 1, 4, 149))
    for width in (0, -1, float("nan"), True):
        with pytest.raises(ParameterError, match="width"):
            build_model("a2e", width)


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ParameterError, match="a2m2e") as info:
        get_variant("a3e")
    assert "unknown model variant 'a3e'" in str(info.value)
    with pytest.raises(ParameterError):
        build_model("nope")


def test_register_variant_and_validation():
    v = Variant("toy2e", "bottleneck", concept_weight=0.25, description="test only",
                options={"sigma": 0.5})
    try:
        register_variant(v)
        assert get_variant("toy2e") is v and v.needs_midlevel and v.option("sigma") == 0.5
        assert v.identity()["options"] == [["sigma", 0.5]]
        assert build_model("toy2e", 0.0625).head == "bottleneck"
        with pytest.raises(ParameterError, match="already registered"):
            register_variant(Variant("toy2e", "direct"))
    finally:
        VARIANTS.pop("toy2e", None)
    with pytest.raises(ParameterError, match="head"):
        Variant("bad", "wide")
    with pytest.raises(ParameterError, match="bottleneck"):
        Variant("bad", "direct", concept_weight=0.5)
    with pytest.raises(ParameterError, match="concept_weight"):
        Variant("bad", "bottleneck", concept_weight=1.5)


def test_captum_can_attribute():
    captum_attr = pytest.importorskip("captum.attr")
    model = build_model("a2m2e", 0.0625).eval()
    x = torch.randn(2, 1, 32, 149, requires_grad=True)
    attributions = captum_attr.Saliency(model).attribute(x, target=3)
    assert attributions.shape == x.shape
