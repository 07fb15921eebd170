"""Drone run logs as arrays, and their plot (top view with obstacles and target; altitude,
distance to the target and the held setpoint over time)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ltc_controller.extras import needs_extra
from ltc_controller.sim.drone.drone_sim import HISTORY_COLUMNS, DroneSim
from ltc_controller.sim.drone.world import TARGET_RADIUS_M, DroneWorld

__all__ = ["OBSTACLE_COLUMNS", "plot_drone_run", "run_arrays", "world_arrays"]

#: Columns of the ``obstacles`` array: centre (m), ``a`` (radius, or half extent along the box's
#: own x), ``b`` (half extent along its y; 0 for round ones), yaw (rad), half height (m), is_box.
OBSTACLE_COLUMNS = ("x", "y", "a", "b", "yaw", "half_height", "is_box")


def world_arrays(world: DroneWorld) -> dict[str, NDArray[np.float64]]:
    """The world as arrays: ``target`` ``(3,)`` (x, y m, yaw rad), ``obstacles``
    ``(M, len(OBSTACLE_COLUMNS))``, scalars ``world_seed``, ``success_radius_m``,
    ``time_limit_s``."""
    obs = np.array(
        [
            (o.x, o.y, o.size[0], o.size[1], o.yaw, o.size[2], float(o.shape == "box"))
            for o in world.obstacles
        ],
        dtype=np.float64,
    ).reshape(-1, len(OBSTACLE_COLUMNS))
    return {
        "target": np.asarray(world.target, dtype=np.float64),
        "obstacles": obs,
        "world_seed": np.asarray(world.seed),
        "success_radius_m": np.asarray(world.params.success_radius_m),
        "time_limit_s": np.asarray(world.params.time_limit_s),
    }


def run_arrays(sim: DroneSim) -> dict[str, NDArray[np.float64]]:
    """An in-process run as the simulator node logs it: ``phys_<col>`` for each of
    :data:`~.drone_sim.HISTORY_COLUMNS` (the simulator's recorded history) and
    :func:`world_arrays`."""
    h = sim.history()
    out = {f"phys_{c}": h[:, i].copy() for i, c in enumerate(HISTORY_COLUMNS)}
    out.update(world_arrays(sim.world))
    return out


def plot_drone_run(
    source: str | Path | Mapping[str, NDArray[np.float64]], png_path: str | Path
) -> Path:
    """Draw a drone run: top view (obstacle footprints, target, success radius, path coloured by
    time; left) and altitude, distance to the target and the held setpoint against time (right).

    Args:
        source: a run log ``.npz`` (the simulator node's ``--log``) or its arrays
            (:func:`run_arrays`).
        png_path: output image (parent folders are created).

    Returns:
        The PNG path.

    Raises:
        OSError: unreadable log or unwritable image. KeyError: a required array is missing.
    """
    with needs_extra("sim", "the drone run plot"):
        import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle, Polygon

    if isinstance(source, (str, Path)):
        with np.load(source) as z:
            a = {k: z[k] for k in z.files}
    else:
        a = dict(source)
    t, x, y, z = a["phys_t"], a["phys_x"], a["phys_y"], a["phys_z"]
    tx, ty, _ = (float(v) for v in a["target"])
    radius = float(a["success_radius_m"])

    fig = plt.figure(figsize=(13, 6.5), layout="constrained")
    gs = fig.add_gridspec(3, 2, width_ratios=(1.2, 1.0))
    ax = fig.add_subplot(gs[:, 0])
    for ox, oy, oa, ob, oyaw, _, is_box in a["obstacles"]:
        if is_box > 0.5:
            c, s = math.cos(oyaw), math.sin(oyaw)
            corners = [
                (ox + c * u - s * v, oy + s * u + c * v)
                for u, v in ((oa, ob), (-oa, ob), (-oa, -ob), (oa, -ob))
            ]
            ax.add_patch(Polygon(corners, closed=True, color="0.45"))
        else:
            ax.add_patch(Circle((ox, oy), oa, color="saddlebrown"))
    ax.add_patch(Circle((tx, ty), TARGET_RADIUS_M, color="red", label="target"))
    ax.add_patch(Circle((tx, ty), radius, fill=False, ls="--", color="red", label="reached"))
    ax.plot(x[:1], y[:1], "k>", ms=8, label="start")
    if t.size > 1:
        pts = np.stack([x, y], axis=1)
        lc = LineCollection(list(np.stack([pts[:-1], pts[1:]], axis=1)), cmap="viridis", lw=1.8)
        lc.set_array(t[:-1])
        ax.add_collection(lc)
        fig.colorbar(lc, ax=ax, label="time (s)", shrink=0.7)
    lo = min(-2.0, float(x.min()) - 2.0 if x.size else -2.0)
    hi = max(tx + 3.0, float(x.max()) + 2.0 if x.size else tx + 3.0)
    half = max(4.0, abs(ty) + 3.0, float(np.abs(y).max()) + 2.0 if y.size else 4.0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(-half, half)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"drone world seed {int(a['world_seed'])}: top view")
    ax.legend(loc="upper left", fontsize=8)

    a1 = fig.add_subplot(gs[0, 1])
    a1.plot(t, z, color="tab:blue")
    a1.axhline(0.0, color="k", lw=0.8)
    a1.set_ylabel("altitude (m)")
    a2 = fig.add_subplot(gs[1, 1], sharex=a1)
    a2.plot(t, a["phys_distance"], color="tab:red")
    a2.axhline(radius, color="k", ls="--", lw=0.8)
    a2.set_ylabel("distance to target (m)")
    a3 = fig.add_subplot(gs[2, 1], sharex=a1)
    for col, lab in (
        ("cmd_vx", "vx"),
        ("cmd_vy", "vy"),
        ("cmd_vz", "vz"),
        ("cmd_yaw_rate", "yaw rate"),
    ):
        a3.plot(t, a[f"phys_{col}"], lw=1.0, label=lab)
    a3.set_ylabel("setpoint (m/s, rad/s)")
    a3.set_xlabel("time (s)")
    a3.legend(loc="upper right", fontsize=8, ncol=4)
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
