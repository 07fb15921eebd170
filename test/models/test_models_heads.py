"""Conv head of the NCP paper (Lechner et al. 2020, Table 2) and the drone trunk (Chahine 2023)."""

import math

import pytest
import torch

from ltc_controller.models.heads import (
    DRONE_CHANNEL_MEAN,
    DRONE_CHANNEL_VARIANCE,
    ConvHead,
    DroneTrunk,
    normalize_features,
    per_image_standardization,
    same_padding,
)


def test_conv_head_has_exactly_79420_parameters():
    assert sum(p.numel() for p in ConvHead(78, 200).parameters()) == 79_420


def test_shapes_follow_tf_same_padding_to_10x25x8():
    head = ConvHead()
    maps = head.feature_maps(torch.rand(2, 3, 78, 200))
    assert [tuple(m.shape[1:]) for m in maps] == [
        (24, 39, 100),
        (36, 20, 50),
        (48, 10, 25),
        (64, 10, 25),
        (8, 10, 25),
    ]
    assert head(torch.rand(2, 3, 78, 200)).shape == (2, 32)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (78, 5, 2, (1, 2)),
        (200, 5, 2, (1, 2)),
        (39, 5, 2, (2, 2)),
        (20, 3, 2, (0, 1)),
        (10, 3, 1, (1, 1)),
        (4, 1, 2, (0, 0)),
    ],
)
def test_same_padding_puts_the_odd_pixel_after(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)


def test_per_image_standardization_matches_tf_definition():
    images = torch.rand(3, 3, 8, 9, dtype=torch.float64) * 5 + 2
    out = per_image_standardization(images)
    for b in range(3):
        x = images[b]
        n = x.numel()
        expected = (x - x.mean()) / max(float(x.std(correction=0)), 1 / math.sqrt(n))
        torch.testing.assert_close(out[b], expected)
    flat = per_image_standardization(torch.full((1, 3, 4, 4), 0.7))
    # constant image: the 1/sqrt(N) floor applies, no division by 0
    torch.testing.assert_close(flat, torch.zeros_like(flat), rtol=0, atol=1e-5)


def test_features_are_channel_major_per_channel_dense():
    head = ConvHead().double()
    images = torch.rand(1, 3, 78, 200, dtype=torch.float64)
    last = head.feature_maps(images)[-1]
    out = head(images)
    for c in range(8):
        expected = torch.relu(last[0, c].flatten() @ head.dense_weight[c] + head.dense_bias[c])
        torch.testing.assert_close(out[0, 4 * c : 4 * c + 4], expected)


def test_wrong_image_size_raises():
    with pytest.raises(ValueError, match=r"\(B, 3, 78, 200\)"):
        ConvHead()(torch.rand(1, 3, 80, 200))


def test_drone_trunk_has_the_papers_maps_and_263524_parameters():
    trunk = DroneTrunk(144, 256)
    assert sum(p.numel() for p in trunk.parameters()) == 263_524
    maps = trunk.feature_maps(torch.rand(2, 3, 144, 256))
    assert [tuple(m.shape[1:]) for m in maps] == [
        (24, 70, 126),
        (36, 33, 61),
        (48, 15, 29),
        (64, 13, 27),
        (16, 6, 13),
    ]
    assert trunk.eval()(torch.rand(2, 3, 144, 256)).shape == (2, 128)


def test_drone_trunk_flattens_in_keras_nhwc_order_and_normalizes_per_channel():
    trunk = DroneTrunk(64, 80).double().eval()
    images = torch.rand(1, 3, 64, 80, dtype=torch.float64)
    last = trunk.feature_maps(images)[-1][0]  # (C, H, W)
    nhwc = last.permute(1, 2, 0).flatten()
    torch.testing.assert_close(trunk(images)[0], trunk.dense(nhwc))
    mean = torch.tensor(DRONE_CHANNEL_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    var = torch.tensor(DRONE_CHANNEL_VARIANCE, dtype=torch.float64).view(1, 3, 1, 1)
    expected = torch.relu(trunk.convs[0]((images - mean) / var.sqrt()))
    torch.testing.assert_close(trunk.feature_maps(images)[0], expected)


def test_drone_trunk_rejects_images_too_small_for_its_convolutions():
    with pytest.raises(ValueError, match="too small"):
        DroneTrunk(60, 200)


def test_layer_feature_norm_standardises_each_frame_and_ignores_the_head_gain():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 78, 200)
    head = ConvHead()
    with torch.no_grad():
        head.dense_bias.uniform_(0.05, 0.1)  # every feature positive: nothing clipped by ReLU
        raw = head(images)
        f = normalize_features(raw, "layer")
        assert f.shape == (3, 32)
        assert torch.allclose(f.mean(1), torch.zeros(3), atol=1e-5)
        assert torch.allclose(f.var(1, unbiased=False), torch.ones(3), atol=1e-3)
        # The gain that training grows (here the dense layer x 50) does not reach the core...
        head.dense_weight.mul_(50.0)
        head.dense_bias.mul_(50.0)
        assert torch.allclose(normalize_features(head(images), "layer"), f, atol=2e-3)
        # ...while the head's own features (what the OOD monitor reads) keep it.
        assert head(images).std() > 5 * raw.std()


def test_feature_norm_none_is_identity_and_unknown_mode_raises():
    x = torch.randn(2, 32) * 40
    assert normalize_features(x, "none") is x
    with pytest.raises(ValueError, match="unknown feature normalisation 'batch'"):
        normalize_features(x, "batch")


def test_drone_trunk_layer_feature_norm():
    trunk = DroneTrunk().eval()
    with torch.no_grad():
        f = normalize_features(trunk(torch.rand(2, 3, 144, 256)), "layer")
    assert f.shape == (2, 128)
    assert torch.allclose(f.var(1, unbiased=False), torch.ones(2), atol=1e-3)
