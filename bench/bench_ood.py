"""Cost of the out-of-distribution monitors on the control path, against the frame's own work.

Per frame the runtime runs the perception head on the preprocessed image and, with statistics in
the policy file, :meth:`FeatureMonitor.observe` on the features (one ``(F, F)`` mat-vec and an
EMA update). With the attention monitor's calibration, a due frame instead goes through
:meth:`AttentionMonitor.take`: the same head pass keeping the conv activations, VisualBackProp
into preallocated buffers and the pair score. This measures the head alone, the feature monitor,
and the attention monitor's frame (head included; its own cost is that minus the head),
alternating frame by frame so they see the same machine load, on one thread, for the NCP head
(F = 32, 78x200 input) and the drone trunk (F = 128, 144x256): median and p99 of the thread's CPU
time (``time.thread_time``) per call, and the ratios monitor / head of the medians.

Run: ``python bench/bench_ood.py [--frames N]`` (default 300).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ltc_controller.models.ood import AttentionStats, fit_feature_stats
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.runtime.ood import AttentionMonitor, FeatureMonitor


def _case(
    head: str, h: int, w: int, frames: int
) -> tuple[str, list[float], list[float], list[float]]:
    kw = {"head": head, "image_height": h, "image_width": w}
    if head == "drone_trunk":
        # No wiring to match: the core does not matter for the head and the monitor.
        kw.update(
            architecture="cnn",
            output_names=("linear_x", "linear_y", "linear_z", "angular_z"),
            output_units=("m/s", "m/s", "m/s", "rad/s"),
            output_scale=(1.0, 1.0, 1.0, 1.0),
        )
    policy = Policy.from_config(PolicyConfig(**kw), seed=0).eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
    with torch.inference_mode():
        f = policy.features(x).shape[-1]
    feats = rng.normal(size=(400, f))
    stats = fit_feature_stats(feats, [(rng.normal(size=(100, f)), np.arange(100) / 20.0)])
    mon = FeatureMonitor(stats)
    att = AttentionMonitor(AttentionStats(1.0, 0.075, 1, 0.1, 0.2), policy.head)
    head_t: list[float] = []
    mon_t: list[float] = []
    att_t: list[float] = []
    with torch.inference_mode():
        for k in range(frames + 10):
            t0 = time.thread_time()
            out = policy.features(x)
            t1 = time.thread_time()
            mon.observe(out.numpy(), 0.05 * k)
            t2 = time.thread_time()
            att.take(x, 0.05 * k, policy)  # head + saliency + pair score
            t3 = time.thread_time()
            if k >= 10:  # warm-up
                head_t.append(t1 - t0)
                mon_t.append(t2 - t1)
                att_t.append(t3 - t2)
    assert att.pairs == frames + 9
    return f"{head} F={f} {h}x{w}", head_t, mon_t, att_t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"bench_ood  ({platform.machine()}, torch {torch.__version__}, one thread)")
    print(
        f"{'case':30s} {'head p50 ms':>11s} {'p99':>7s} {'feat. mon. p50 us':>17s} {'p99':>7s} "
        f"{'feat./head':>10s} {'head+attention p50 ms':>21s} {'p99':>7s} {'attention/head':>14s}"
    )
    for head, h, w in (("ncp_conv", 78, 200), ("drone_trunk", 144, 256)):
        name, ht, mt, at = _case(head, h, w, args.frames)
        hp50, hp99 = np.median(ht) * 1e3, np.quantile(ht, 0.99) * 1e3
        mp50, mp99 = np.median(mt) * 1e6, np.quantile(mt, 0.99) * 1e6
        ap50, ap99 = np.median(at) * 1e3, np.quantile(at, 0.99) * 1e3
        print(
            f"{name:30s} {hp50:11.3f} {hp99:7.3f} {mp50:17.1f} {mp99:7.1f} "
            f"{mp50 / 1e3 / hp50:10.4f} {ap50:21.3f} {ap99:7.3f} {(ap50 - hp50) / hp50:14.3f}"
        )


if __name__ == "__main__":
    main()
