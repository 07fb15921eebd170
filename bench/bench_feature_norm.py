"""Does per-frame feature standardisation (``feature_norm="layer"``) hurt the baselines?

Each baseline of the `compare` recipe is trained twice on one bag with the recipe's
``TrainConfig`` (seed 0), once with ``feature_norm="layer"`` and once with ``"none"``, everything
else equal; then each pair is driven closed loop by ``ltc-controller evaluate`` on the same unseen
tracks. Written to ``--out``: ``policies/<model>_<norm>.safetensors``, ``train_results.json``
(best validation loss, held-out correlation, steps, wall time, history per run) and
``eval_<model>/`` (the evaluation reports: ``episodes.csv`` has departures, mean |lateral error|
and steering-rate RMS per episode). A rerun skips what is already there.

Run (the README's "Feature normalisation for every model" numbers)::

    ltc-controller record data/fn_expert --episodes 10 --episode-s 30 \
        --first-track-seed 1000 --seed 1
    python bench/bench_feature_norm.py --bag data/fn_expert --out fn --epochs 2

Cost: about 5 to 15 minutes per training and 7 to 11 minutes per evaluated pair on a shared
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from ltc_controller.training.bag import read_demonstrations
from ltc_controller.training.presets import COMPARE_FULL
from ltc_controller.training.trainer import train

MODELS = {"LSTM(64)": "lstm64", "GRU(64)": "gru64", "CT-RNN(64)": "ctrnn64", "CNN": "cnn"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bag", required=True, help="expert bag (ltc-controller record)")
    ap.add_argument("--out", required=True, help="output folder (reused by a rerun)")
    ap.add_argument("--epochs", type=int, default=COMPARE_FULL.train.epochs)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated labels")
    ap.add_argument("--conditions", default="clean,noise_0.2,dim")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--distance", type=float, default=300.0)
    args = ap.parse_args()
    labels = args.models.split(",")
    unknown = [m for m in labels if m not in MODELS]
    if unknown or args.epochs < 1:
        ap.error(f"models {unknown} not in {list(MODELS)}, or --epochs < 1")
    out = Path(args.out)
    (out / "policies").mkdir(parents=True, exist_ok=True)
    res_path = out / "train_results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    archs = {m[0]: (m[1], m[2]) for m in COMPARE_FULL.models}
    demos = read_demonstrations(Path(args.bag), "/camera/image_raw", "/expert_cmd")
    for label in labels:
        slug = MODELS[label]
        arch, units = archs[label]
        for norm in ("layer", "none"):
            key = f"{label}|{norm}"
            if key in results:
                continue
            cfg = replace(
                COMPARE_FULL.train,
                arch=arch,
                units=units,
                seed=0,
                epochs=args.epochs,
                feature_norm=norm,
            )
            t = time.perf_counter()
            r = train(
                demos,
                cfg,
                output=out / "policies" / f"{slug}_{norm}.safetensors",
                show_progress=False,
            )
            results[key] = {
                "best_val_loss": r.best_val_loss,
                "val_corr": r.val_corr,
                "steps": r.steps,
                "wall_s": time.perf_counter() - t,
                "history": r.history,
                "config": cfg.to_dict(),
            }
            res_path.write_text(json.dumps(results, indent=1))
            print(f"{key}: val loss {r.best_val_loss:.4f}, val corr {r.val_corr:.3f}", flush=True)
        if (out / f"eval_{slug}" / "summary.json").is_file():
            continue
        cmd = [sys.executable, "-m", "ltc_controller", "evaluate"]
        for norm in ("layer", "none"):
            cmd += ["--policy", f"{slug}-{norm}={out / 'policies' / f'{slug}_{norm}.safetensors'}"]
        cmd += ["--conditions", args.conditions, "--episodes", str(args.episodes)]
        cmd += ["--distance", str(args.distance), "--first-track-seed", "5000", "--threads", "1"]
        subprocess.run([*cmd, "--output", str(out / f"eval_{slug}")], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
