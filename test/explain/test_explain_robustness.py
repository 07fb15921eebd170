"""Attention robustness: our SSIM against scikit-image's, the noise, and the SSIM table."""

from __future__ import annotations

import numpy as np
import pytest

from ltc_controller.explain.robustness import (
    SsimStats,
    add_noise,
    attention_robustness_section,
    robustness_table,
    saliency_robustness,
    ssim,
)
from ltc_controller.models.policy import Policy, PolicyConfig


@pytest.mark.parametrize("shape", [(78, 200), (11, 11), (40, 23)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_equals_scikit_image_structural_similarity(shape, data_range):
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape) * data_range
    b = np.clip(a + 0.2 * data_range * rng.standard_normal(shape), 0, data_range)
    ref = metrics.structural_similarity(
        a, b, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b, data_range=data_range) == pytest.approx(ref, abs=1e-12)


def test_ssim_is_one_for_equal_maps_and_falls_with_distortion():
    rng = np.random.default_rng(0)
    a = rng.random((78, 200))
    assert ssim(a, a) == pytest.approx(1.0)
    values = [ssim(a, np.clip(a + s * rng.standard_normal(a.shape), 0, 1)) for s in (0.05, 0.2)]
    assert 1.0 > values[0] > values[1]
    with pytest.raises(ValueError, match="smaller than"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="one shape"):
        ssim(np.zeros((20, 20)), np.zeros((20, 21)))


def test_noise_has_the_paper_variance_before_clipping():
    rng = np.random.default_rng(1)
    x = np.full((20000,), 0.5, dtype=np.float32)
    y = add_noise(x, 0.01, rng)  # std 0.1: almost nothing is clipped
    assert y.var() == pytest.approx(0.01, rel=0.05)
    z = add_noise(x, 0.3, rng)
    assert z.min() >= 0.0 and z.max() <= 1.0


def test_saliency_robustness_gives_one_row_per_model_and_is_reproducible():
    rng = np.random.default_rng(2)
    images = rng.random((3, 3, 78, 200)).astype(np.float32)
    ncp = Policy.from_config(PolicyConfig(), seed=0)
    cnn = Policy.from_config(PolicyConfig(architecture="cnn"), seed=0)
    r_ncp = saliency_robustness(ncp, images, seed=7)
    assert sorted(r_ncp) == [0.1, 0.2, 0.3]
    assert all(-1.0 <= s.mean <= 1.0 and s.n == 3 for s in r_ncp.values())
    assert saliency_robustness(ncp, images, seed=7) == r_ncp  # same noise draws
    none = saliency_robustness(ncp, images, variances=(0.0,))
    assert none[0.0].mean == pytest.approx(1.0)  # no noise, same maps
    table = robustness_table({"NCP-19": r_ncp, "CNN": saliency_robustness(cnn, images, seed=7)})
    lines = table.splitlines()
    assert lines[0] == "| model | σ² = 0.1 | σ² = 0.2 | σ² = 0.3 |"
    assert lines[2].startswith("| NCP-19 | ") and lines[3].startswith("| CNN | ")
    assert str(r_ncp[0.1]) in lines[2]


def test_robustness_section_reads_policy_files(tmp_path):
    from ltc_controller.models.policy_file import save_policy

    path = save_policy(
        Policy.from_config(PolicyConfig(architecture="lstm"), seed=1), tmp_path / "l.st"
    )
    rng = np.random.default_rng(3)
    images = rng.random((2, 3, 78, 200)).astype(np.float32)
    text = attention_robustness_section({"LSTM(64)": path}, images=images, variances=(0.1,))
    assert text.startswith("## Attention robustness")
    assert "| LSTM(64) | " in text and "2 frames" in text
    assert isinstance(SsimStats(0.5, 0.1, 2).__str__(), str)
