"""The feature monitor's Mahalanobis score against the deep nearest-neighbour score (issue 16 §1c).

Sun, Ming, Zhu and Li 2022 ("Out-of-distribution detection with deep nearest neighbors", ICML)
score a frame by the distance from its L2-normalised features to their k-th nearest neighbour in
a bank of (normalised) training features. This scores bags with both, through the policy's head
as ``monitor check`` does:

* Mahalanobis: the policy file's own statistics (:meth:`FeatureStats.scores`), its thresholds;
* kNN: banks of N features drawn at random from the ``--train`` frames (one draw per seed), for
  each N and k; also kNN on the raw (not normalised) features (``--raw``). Thresholds for each
  are calibrated like the monitor's (:func:`calibrate_thresholds`, EMA over the file's window, at
  most 1 alarm onset per 10 min of ``--calibration-bag`` driving, x 1.1).

Prints per shifted bag the per-frame AUROC against ``--clean`` and the share of frames whose EMA
is above the calibrated degraded level, then the scoring cost per frame on one thread (float32,
preallocated buffers, as the runtime would run it; thread CPU time, median and p99).

Run: ``python bench/bench_ood_knn.py --train train --calibration-bag calib --clean clean --bag
noise_0.1 --bag dim ...`` (bags as in the README's monitor section).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.models.ood import auroc, calibrate_thresholds, ema_scores
from ltc_controller.models.policy_file import BUNDLED_POLICY, load_policy
from ltc_controller.training.bag import read_policy_frames
from ltc_controller.training.monitor import head_features

Seg = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]


def knn_scores(bank: NDArray[Any], x: NDArray[Any], k: int, normalise: bool) -> NDArray[Any]:
    """Distance ``(n,)`` from each row of ``x (n, F)`` to its k-th nearest row of ``bank (N, F)``
    (Euclidean; both L2-normalised first when ``normalise``: then ``sqrt(2 - 2 cos)``)."""
    if normalise:
        b = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
        q = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        cos = -np.partition(-(q @ b.T), k - 1, axis=1)[:, k - 1]
        return np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ bank.T + (bank * bank).sum(1)[None]
    return np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, k - 1], 0.0))


def _emas(s: NDArray[Any], d: Seg, window_s: float) -> list[NDArray[np.float64]]:
    return [ema_scores(s[d[2] == g], d[1][d[2] == g], window_s) for g in np.unique(d[2])]


def _minutes(d: Seg) -> float:
    return sum(float(np.ptp(d[1][d[2] == g])) / 60.0 for g in np.unique(d[2]))


def _runtime_knn(bank: NDArray[Any], k: int, normalise: bool) -> Callable[[NDArray[Any]], float]:
    """One frame's kNN score into preallocated buffers (in-place partition): float32 on the unit
    sphere; float64 for raw features, whose ``|b|^2 - 2 b.x + |x|^2`` cancels in float32 (feature
    norms are large against the neighbour distances)."""
    dtype = np.float32 if normalise else np.float64
    b = bank.astype(dtype)
    if normalise:
        b /= np.linalg.norm(b, axis=1, keepdims=True)
    b2 = (b * b).sum(1)
    z = np.zeros(b.shape[1], dtype)
    buf = np.zeros(len(b), dtype)
    top = len(b) - k

    def normed(x: NDArray[Any]) -> float:
        np.multiply(x, np.float32(1.0 / max(math.sqrt(float(np.dot(x, x))), 1e-12)), out=z)
        np.matmul(b, z, out=buf)
        buf.partition(top)
        return math.sqrt(max(0.0, 2.0 - 2.0 * float(buf[top])))

    def raw(x: NDArray[Any]) -> float:
        np.copyto(z, x)
        np.matmul(b, z, out=buf)
        np.multiply(buf, -2.0, out=buf)
        np.add(buf, b2, out=buf)
        buf.partition(k - 1)
        return math.sqrt(max(0.0, float(buf[k - 1]) + float(np.dot(z, z))))

    return normed if normalise else raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", type=Path, default=BUNDLED_POLICY)
    ap.add_argument("--train", type=Path, action="append", required=True)
    ap.add_argument("--calibration-bag", type=Path, required=True)
    ap.add_argument("--clean", type=Path, required=True)
    ap.add_argument("--bag", type=Path, action="append", required=True)
    ap.add_argument("--banks", default="1000,4000")
    ap.add_argument("--k", default="1,5,20,50")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--raw", default="4000:1", help="N:k pairs for kNN on raw features")
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.policy)
    stats = policy.feature_stats
    if stats is None:
        raise SystemExit(f"{args.policy}: no feature statistics")
    cfg, c = policy.config, policy.config.crop

    def read(bag: Path) -> Seg:
        d = read_policy_frames(
            bag,
            "/camera/image_raw",
            height=cfg.image_height,
            width=cfg.image_width,
            crop=(c.top, c.bottom, c.left, c.right),
            max_frames=args.max_frames,
        )
        f = head_features(policy, d.images).astype(np.float64)
        return f, d.stamps_ns.astype(np.float64) * 1e-9, d.segment

    train = np.concatenate([read(b)[0] for b in args.train])
    calib, clean = read(args.calibration_bag), read(args.clean)
    shifted = {b.name: read(b) for b in args.bag}

    methods: dict[str, tuple[Callable[[NDArray[Any]], NDArray[Any]], Any]] = {
        "Mahalanobis": (stats.scores, None)
    }
    for seed in (int(s) for s in args.seeds.split(",")):
        for n in (int(v) for v in args.banks.split(",")):
            bank = train[np.random.default_rng(seed).choice(len(train), n, replace=False)]
            for k in (int(v) for v in args.k.split(",")):
                methods[f"kNN N={n} k={k} seed {seed}"] = (
                    lambda x, b=bank, k=k: knn_scores(b, x, k, True),
                    _runtime_knn(bank, k, True),
                )
            for pair in args.raw.split(","):
                if pair and int(pair.split(":")[0]) == n:
                    k = int(pair.split(":")[1])
                    methods[f"raw kNN N={n} k={k} seed {seed}"] = (
                        lambda x, b=bank, k=k: knn_scores(b, x, k, False),
                        _runtime_knn(bank, k, False),
                    )
    print("| score | degraded | " + " | ".join(shifted) + " |")
    print("|---|---:|" + "---:|" * len(shifted))
    for name, (fn, _) in methods.items():
        ref = fn(clean[0])
        deg, _, _ = calibrate_thresholds(
            _emas(fn(calib[0]), calib, stats.window_s), _minutes(calib)
        )
        cells = []
        for d in shifted.values():
            s = fn(d[0])
            above = float(np.mean(np.concatenate(_emas(s, d, stats.window_s)) > deg))
            cells.append(f"{auroc(ref, s):.3f} / {above:.0%}")
        print(f"| {name} | {deg:.3g} | " + " | ".join(cells) + " |")
    print("(cells: per-frame AUROC vs clean / share of frames with the EMA above degraded)")

    # Cost per frame, one thread, as the runtime would score (float32 features in).
    mean, prec = stats.mean.astype(np.float32), stats.precision.astype(np.float32)
    dv, pd = np.zeros(stats.features, np.float32), np.zeros(stats.features, np.float32)

    def maha(x: NDArray[Any]) -> float:
        np.subtract(x, mean, out=dv)
        np.matmul(prec, dv, out=pd)
        return float(np.dot(dv, pd)) / stats.features

    frames = clean[0].astype(np.float32)
    for n, (fn, r) in methods.items():  # the runtime form against the batch (brute-force) one
        if r is not None:
            got = np.array([r(x) for x in frames[:200]])
            np.testing.assert_allclose(got, fn(clean[0][:200]), rtol=1e-3, atol=1e-3, err_msg=n)
    timed = [("Mahalanobis", maha)] + [(n, r) for n, (_, r) in methods.items() if r is not None]
    times: dict[str, list[int]] = {n: [] for n, _ in timed}
    for rep in range(2):
        for x in frames:
            for n, fn1 in timed:
                t0 = time.thread_time_ns()
                fn1(x)
                if rep:
                    times[n].append(time.thread_time_ns() - t0)
    print("| score | p50 us | p99 us |\n|---|---:|---:|")
    for n, t in times.items():
        us = np.asarray(t) / 1e3
        print(f"| {n} | {np.median(us):.1f} | {np.quantile(us, 0.99):.1f} |")


if __name__ == "__main__":
    main()
