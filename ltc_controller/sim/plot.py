"""Plot a simulator run log (the ``.npz`` written by ``SimulatorNode.write_log``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ltc_controller.extras import needs_extra
from ltc_controller.sim.track import Track


def plot_run(npz_path: str | Path, png_path: str | Path, track: Track) -> Path:
    """Draw a run: track and driven path (left), steering, speed and lateral error vs time (right).

    Args:
        npz_path: run log with ``phys_t, phys_x, phys_y, phys_yaw, phys_speed, phys_steering,
            phys_lateral_error`` arrays (s, m, rad, m/s) and optionally ``cmd_*`` arrays.
        png_path: output image (parent folders are created).
        track: the track the run drove on (for its edges and lane limit).

    Returns:
        The PNG path.

    Raises:
        OSError: unreadable log or unwritable image. KeyError: a required array is missing.
    """
    with needs_extra("sim", "the run plot"):
        import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    with np.load(npz_path) as z:
        a = {k: z[k] for k in z.files}
    t = a["phys_t"]
    x, y = a["phys_x"], a["phys_y"]
    yaw = a["phys_yaw"]
    # The log holds the rear-axle pose; draw the wheelbase midpoint, where lane error is measured.
    half = 0.5 * float(a["wheelbase_m"]) if "wheelbase_m" in a else 1.25
    cx, cy = x + half * np.cos(yaw), y + half * np.sin(yaw)

    fig = plt.figure(figsize=(13, 6.5), layout="constrained")
    gs = fig.add_gridspec(3, 2, width_ratios=(1.1, 1.0))
    ax = fig.add_subplot(gs[:, 0])
    left, right = track.edges()
    for e in (left, right):
        ax.plot(np.r_[e[:, 0], e[:1, 0]], np.r_[e[:, 1], e[:1, 1]], color="0.35", lw=0.8)
    ax.plot(track.x[0], track.y[0], "k>", ms=8, label="start")
    if t.size > 1:
        pts = np.stack([cx, cy], axis=1)
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        lc = LineCollection(list(segs), cmap="viridis", linewidths=1.6)
        lc.set_array(t[:-1])
        ax.add_collection(lc)
        fig.colorbar(lc, ax=ax, label="time (s)", shrink=0.7)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"track seed {track.seed}, {track.length:.0f} m lap")
    ax.legend(loc="upper right")

    a1 = fig.add_subplot(gs[0, 1])
    a1.plot(t, a["phys_steering"], label="actual")
    if "cmd_recv" in a and a["cmd_recv"].size and "start_wall" in a:
        # Command receive times are ROS time; sim time 0 was at ``start_wall``.
        t_cmd = a["cmd_recv"] - float(a["start_wall"])
        a1.step(t_cmd, a["cmd_steering"], where="post", lw=0.8, alpha=0.7, label="command")
    a1.set_ylabel("steering (rad)")
    a1.legend(loc="upper right", fontsize=8)
    a2 = fig.add_subplot(gs[1, 1], sharex=a1)
    a2.plot(t, a["phys_speed"], color="tab:orange")
    a2.set_ylabel("speed (m/s)")
    a3 = fig.add_subplot(gs[2, 1], sharex=a1)
    a3.plot(t, a["phys_lateral_error"], color="tab:red")
    lim = float(a["lane_limit_m"]) if "lane_limit_m" in a else 0.5 * track.lane_width_m - 0.9
    for s in (-lim, lim):
        a3.axhline(s, color="k", ls="--", lw=0.8)
    a3.set_ylabel("lateral error (m)")
    a3.set_xlabel("time (s)")
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
