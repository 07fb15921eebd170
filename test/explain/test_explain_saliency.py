"""Saliency: VisualBackProp's geometry, integrated gradients' completeness, the overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from ltc_controller.explain.saliency import (
    attribution_map,
    gaussian_blur,
    integrated_gradients,
    overlay,
    visual_backprop,
)
from ltc_controller.models.heads import ConvHead, DroneTrunk, same_padding
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.runtime.schedule import step_counts


class _DesignedMaps(ConvHead):
    """The NCP head with feature maps chosen by the test: ones everywhere, except the deepest
    layer, which is zero but for one unit."""

    def __init__(self, unit: tuple[int, int]) -> None:
        super().__init__()
        self.unit = unit

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        real = super().feature_maps(images)
        maps = [torch.ones_like(m) for m in real]
        maps[-1] = torch.zeros_like(real[-1])
        maps[-1][:, :, self.unit[0], self.unit[1]] = 1.0
        return maps


def _receptive_field(head: ConvHead, unit: tuple[int, int]) -> tuple[range, range]:
    """Input rows and columns a deep unit sees, by TF 'same' padding arithmetic, layer by layer."""
    sizes = [(head.image_height, head.image_width)]
    for _, _, s in ((c.out_channels, c.kernel_size[0], c.stride[0]) for c in head.convs):
        h, w = sizes[-1]
        sizes.append((-(-h // s), -(-w // s)))
    (r0, r1), (c0, c1) = (unit[0], unit[0]), (unit[1], unit[1])
    for layer in range(len(head.convs) - 1, -1, -1):
        k, s = head.convs[layer].kernel_size[0], head.convs[layer].stride[0]
        h, w = sizes[layer]
        ph, pw = same_padding(h, k, s)[0], same_padding(w, k, s)[0]
        r0, r1 = max(r0 * s - ph, 0), min(r1 * s - ph + k - 1, h - 1)
        c0, c1 = max(c0 * s - pw, 0), min(c1 * s - pw + k - 1, w - 1)
    return range(r0, r1 + 1), range(c0, c1 + 1)


@pytest.mark.parametrize("unit", [(0, 0), (4, 11), (9, 24)])
def test_visual_backprop_of_one_deep_unit_covers_exactly_its_receptive_field(unit):
    head = _DesignedMaps(unit)
    sal = visual_backprop(head, torch.rand(1, 3, 78, 200))[0].numpy()
    rows, cols = _receptive_field(head, unit)
    expected = np.zeros_like(sal, dtype=bool)
    expected[rows.start : rows.stop, cols.start : cols.stop] = True
    assert np.array_equal(sal > 0, expected)
    assert sal.max() == pytest.approx(1.0)
    # The centre of the field collects the most overlapping footprints.
    peak = np.unravel_index(np.argmax(sal), sal.shape)
    assert rows.start < peak[0] < rows.stop - 1 or len(rows) < 3
    assert cols.start < peak[1] < cols.stop - 1 or len(cols) < 3


def test_visual_backprop_maps_are_in_unit_range_at_input_size_for_both_heads():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 78, 200)
    sal = visual_backprop(ConvHead(), x)
    assert sal.shape == (3, 78, 200)
    assert float(sal.min()) == 0.0 and float(sal.max()) == pytest.approx(1.0)
    y = torch.rand(2, 3, 144, 256)
    sal2 = visual_backprop(DroneTrunk(), y)
    assert sal2.shape == (2, 144, 256)
    assert 0.0 <= float(sal2.min()) and float(sal2.max()) <= 1.0
    # 'valid' padding: the last rows/columns no unit of the first layer sees get nothing.
    assert float(sal2[:, -1, :].abs().sum()) == 0.0


def test_visual_backprop_follows_a_bright_stripe():
    """A head that responds to edges puts its saliency on the one structure in the image."""
    torch.manual_seed(1)
    head = ConvHead()
    x = torch.full((1, 3, 78, 200), 0.3)
    x[:, :, :, 140:146] = 0.95  # a vertical "marking"
    sal = visual_backprop(head, x)[0].numpy()
    band = np.zeros_like(sal, dtype=bool)
    band[:, 130:156] = True
    assert sal[band].sum() / sal.sum() > 0.5  # band = 13 % of the image


def _policy(arch: str, seed: int = 0) -> Policy:
    p = Policy.from_config(PolicyConfig(architecture=arch), seed=seed).double().eval()
    return p


def _output(policy: Policy, images: Tensor, steps: Tensor, t: int) -> float:
    with torch.no_grad():
        return float(policy(images[None], steps[None])[0, t, 0])


def _road(k: int) -> Tensor:
    """A smooth road-like image with one slanted marking (ReLU kinks stay few along the path)."""
    y, x = np.mgrid[0:78, 0:200]
    lane = (np.abs(x - (100 + 20 * k + (y - 78) * 0.8)) < 3) * 0.6
    img = np.stack([0.2 + lane + y / 300, 0.25 + lane + y / 400, 0.3 + lane + 0 * y], 0)
    return torch.tensor(np.clip(img, 0, 1))


@pytest.mark.parametrize("arch", ["ncp_ltc", "lstm", "cnn"])
def test_integrated_gradients_sum_to_the_output_change(arch):
    """Completeness (Sundararajan et al. 2017, Prop. 1): sum of attributions = f(x) - f(x'),
    here through head and core with the state carried from the earlier frames."""
    policy = _policy(arch)
    images = torch.stack([_road(k) for k in range(4)])
    # Frames at 0, 50, 150, 200 ms with a 50 ms step (runtime.schedule.step_counts).
    steps = torch.from_numpy(step_counts(np.array([0, 50, 150, 200]) * 1_000_000, 50_000_000))
    assert steps.tolist() == [0, 1, 2, 1]
    t = 2
    base = images.clone()
    base[t] = gaussian_blur(images[t], 5.0)  # the default baseline
    delta = _output(policy, images, steps, t) - _output(policy, base, steps, t)
    attr = integrated_gradients(
        policy, images, step=t, frame_steps=steps, n_steps=128, batch_size=64
    )
    assert attr.shape == (3, 78, 200)
    assert abs(delta) > 1e-6
    assert float(attr.sum()) == pytest.approx(delta, rel=0.03, abs=1e-8)


def test_integrated_gradients_reject_a_frame_that_takes_no_step():
    policy = _policy("ncp_ltc")
    images = torch.rand(3, 3, 78, 200, dtype=torch.float64)
    # 20 ms frames, 50 ms step: the second frame takes no step.
    steps = torch.from_numpy(step_counts(np.array([0, 20, 40]) * 1_000_000, 50_000_000))
    assert steps.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="takes no integration step"):
        integrated_gradients(policy, images, step=1, frame_steps=steps)
    with pytest.raises(ValueError, match=r"frame_steps must be \(3,\)"):
        integrated_gradients(policy, images, step=1, frame_steps=steps[None])
    with pytest.raises(ValueError, match="unknown output"):
        integrated_gradients(policy, images, step=0, output="throttle")


def test_gaussian_blur_keeps_mass_and_has_the_given_width():
    x = torch.zeros(3, 78, 200, dtype=torch.float64)
    x[:, 40, 100] = 1.0
    b = gaussian_blur(x, 5.0)
    assert float(b.sum()) == pytest.approx(3.0)
    assert float(b[0, 40, 95] / b[0, 40, 100]) == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_attribution_map_is_clipped_at_its_percentile():
    a = torch.zeros(3, 10, 10)
    a[0, 0, 0] = 100.0  # one outlier
    a[1, 5:, :] = 1.0
    m = attribution_map(a, clip_percentile=90.0)
    assert m.shape == (10, 10)
    assert float(m[0, 0]) == 1.0 and float(m[7, 3]) == 1.0  # not crushed by the outlier
    assert float(m[2, 2]) == 0.0


def test_overlay_leaves_pixels_without_saliency_unchanged():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (78, 200, 3), dtype=np.uint8)
    sal = np.zeros((78, 200), dtype=np.float32)
    sal[10:20, 50:60] = 1.0
    out = overlay(rgb, sal, alpha=0.8)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.array_equal(out[sal == 0], rgb[sal == 0])
    assert np.abs(out[10:20, 50:60].astype(int) - rgb[10:20, 50:60]).mean() > 10
    with pytest.raises(ValueError, match="do not match"):
        overlay(rgb, sal[:, :100])
