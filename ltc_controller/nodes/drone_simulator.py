"""The simulator node's drone scenario (``scenario:=drone``): :class:`DroneSim` in real time.

Topics (names resolve under the node's namespace unless absolute; parameters of
:mod:`ltc_controller.nodes.simulator`):

- ``/camera/image_raw`` sensor_msgs/msg/Image (rgb8, the forward camera with the condition's
  camera noise), SENSOR_DATA QoS, at ``camera_rate_hz``;
- ``cmd_vel`` (``twist_topic``) geometry_msgs/msg/Twist (or TwistStamped, ``twist_type``),
  subscribed: body-frame velocity setpoint (REP 103: ``linear.x`` forward, ``linear.y`` left,
  ``linear.z`` up, m/s; ``angular.z`` yaw rate, rad/s), as ``safety_fallback`` publishes it with
  the drone profile; held until the next. A TwistStamped carries its camera frame's stamp
  through both nodes, so the log has each frame's camera-to-setpoint latency (as the car's);
  a plain Twist has no stamp to match;
- ``land`` (``land_topic``) std_msgs/msg/Empty, subscribed: descend and disarm on touchdown
  (``safety_fallback``'s landing request);
- ``odom`` nav_msgs/msg/Odometry, true state (``odom`` -> ``base_link`` = centre of mass; twist in
  ``base_link``), at ``odom_rate_hz``;
- ``ground_truth/task`` (``task_topic``) diagnostic_msgs/msg/DiagnosticArray, one status
  ``drone_task`` with the task metrics as key/values (distance_m, min_distance_m, reached,
  time_to_target_s, collisions, success, done, mode, altitude_m), with each odometry message.

Timing as the car's: the physics timer advances the simulation by the steady-clock time since its
last tick (the drone's 500 Hz physics and 100 Hz velocity loop run inside), capped at
``max_catchup_s``.

Run log: streamed to disk as the car's (:class:`~.run_log.RunLog`: one ``.npy`` per column in
``<log>.parts/`` after :meth:`DroneSimulatorNode.open_log`, flushed every
:data:`~.run_log.LOG_FLUSH_S`), so a long flight keeps memory flat and a killed simulator
loses at most the last second; :meth:`DroneSimulatorNode.write_log` turns it into the ``.npz``
and ``.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.nodes.commands import read_command
from ltc_controller.nodes.run_log import RunLog, frame_latencies
from ltc_controller.sim.drone.drone_sim import HISTORY_COLUMNS, DroneMetrics, DroneSim, FlightMode
from ltc_controller.sim.drone.plot import world_arrays
from ltc_controller.transport import port

__all__ = ["CMD_COLUMNS", "FRAME_COLUMNS", "LAND_COLUMNS", "PHYS_COLUMNS", "DroneSimulatorNode"]

#: Columns of the run log by row kind (``phys_*`` from the drone's HISTORY_COLUMNS).
FRAME_COLUMNS = {
    "frame_stamp_ns": np.int64,
    "frame_sim_t": np.float64,
    "frame_render_s": np.float64,
}
CMD_COLUMNS = {
    "cmd_recv": np.float64,
    "cmd_stamp_ns": np.int64,
    "cmd_vx": np.float64,
    "cmd_vy": np.float64,
    "cmd_vz": np.float64,
    "cmd_yaw_rate": np.float64,
}
LAND_COLUMNS = {"land_recv": np.float64}
PHYS_COLUMNS = {f"phys_{c}": np.float64 for c in HISTORY_COLUMNS}


def _split_stamp(t: float) -> tuple[int, int]:
    ns = int(round(t * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


class DroneSimulatorNode:
    """Real-time drone simulator on a transport node.

    Args:
        node: a :class:`ltc_controller.transport.port.Node`.
        params: the simulator's resolved parameters (:data:`~.simulator.PARAMS`).
        sim: an already built simulation (tests); default from ``world_seed`` and
            ``drone_condition``.
    """

    def __init__(
        self, node: port.Node, params: Mapping[str, Any], sim: DroneSim | None = None
    ) -> None:
        from ltc_controller.sim.conditions import ImageEffects
        from ltc_controller.sim.drone.conditions import get_drone_condition
        from ltc_controller.sim.drone.scenario import make_drone_sim

        self.node = node
        self.params = p = dict(params)
        self.condition = get_drone_condition(p["drone_condition"])
        if sim is None:
            sim = make_drone_sim(
                self.condition,
                p["world_seed"],
                record_history=True,
                image_width=p["image_width"],
                image_height=p["image_height"],
            )
        self.sim = sim
        self._effects = ImageEffects(
            self.condition.image_condition, p["world_seed"], sim.image_height, sim.image_width
        )
        self._log = RunLog(
            {
                "frames": FRAME_COLUMNS,
                "cmds": CMD_COLUMNS,
                "land": LAND_COLUMNS,
                "phys": PHYS_COLUMNS,
            }
        )
        self.bad_commands = 0
        self.physics_overruns = 0
        self.camera_errors = 0
        #: the first landing request: ROS time (s) and horizontal speed then (m/s, the hover)
        self.land_wall: float | None = None
        self.hover_speed_mps: float | None = None
        #: the same on the simulator's clock (sim time, s)
        self.land_sim_t: float | None = None
        #: touchdown (mode ``landed``): ROS time and sim time (s)
        self.touchdown_wall: float | None = None
        self.touchdown_sim_t: float | None = None
        self._start_wall = node.now()
        self._last_steady: float | None = None
        self._stopped = False
        self._reported_done = False

        cam_qos = port.RELIABLE if p["camera_reliable"] else port.SENSOR_DATA
        self._image_pub = node.create_publisher("sensor_msgs/msg/Image", p["camera_topic"], cam_qos)
        self._odom_pub = node.create_publisher("nav_msgs/msg/Odometry", p["odom_topic"])
        self._task_pub = node.create_publisher(
            "diagnostic_msgs/msg/DiagnosticArray", p["task_topic"]
        )
        self._twist_type = p["twist_type"]
        node.create_subscription(p["twist_type"], p["twist_topic"], self.on_command)
        node.create_subscription("std_msgs/msg/Empty", p["land_topic"], self.on_land)
        self._timers = [
            node.create_timer(1.0 / p["physics_rate_hz"], self.on_physics),
            node.create_timer(1.0 / p["camera_rate_hz"], self.on_camera),
        ]
        if p["odom_rate_hz"] > 0.0:
            self._timers.append(node.create_timer(1.0 / p["odom_rate_hz"], self.publish_odom))
        tx, ty, _ = sim.world.target
        node.logger.info(
            f"simulator: drone, world seed {p['world_seed']} ({sim.params.scene}), condition "
            f"{self.condition.name}, target at ({tx:.1f}, {ty:.1f}) m, "
            f"camera {sim.image_width}x{sim.image_height} @ {p['camera_rate_hz']} Hz"
        )

    # -- callbacks -----------------------------------------------------------------------------

    def on_command(self, msg: Any) -> None:
        """Hold a Twist (TwistStamped) setpoint; a malformed or non-finite one is counted and
        ignored."""
        recv = self.node.now()
        try:
            values, stamp_ns = read_command(self._twist_type, msg)
            vx, vy, vz, wz = (float(x) for x in values)
        except (AttributeError, TypeError, ValueError) as e:
            self._bad_command(f"malformed Twist ({e})")
            return
        if not self.sim.set_command(vx, vy, vz, wz):
            self._bad_command(f"non-finite Twist {(vx, vy, vz, wz)}")
            return
        self._log["cmds"].append((recv, stamp_ns, vx, vy, vz, wz))

    def _log_error(self, text: str) -> None:
        self.node.logger.error(f"simulator: {text}")

    def _bad_command(self, why: str) -> None:
        self.bad_commands += 1
        if self.bad_commands == 1:
            self.node.logger.warning(f"simulator: ignoring {why}; further ones are only counted")

    def on_land(self, msg: Any) -> None:
        """Start landing (repeated requests change nothing)."""
        del msg
        now = self.node.now()
        self._log["land"].append((now,))
        if self.land_wall is None:
            self.land_wall = now
            self.land_sim_t = self.sim.time
            v = self.sim.velocity
            self.hover_speed_mps = float(math.hypot(v[0], v[1]))
            self.node.logger.warning(
                f"simulator: landing requested at sim time {self.sim.time:.2f} s, altitude "
                f"{self.sim.altitude:.2f} m"
            )
        self.sim.land()

    def on_physics(self) -> None:
        """Advance the simulation by the steady time since the last tick."""
        now = self.node.steady()
        dt = (
            1.0 / self.params["physics_rate_hz"]
            if self._last_steady is None
            else now - self._last_steady
        )
        self._last_steady = now
        if dt > self.params["max_catchup_s"]:
            self.physics_overruns += 1
            dt = self.params["max_catchup_s"]
        self.sim.step(max(0.0, dt))
        self._flush_history()
        self._log.flush_every(now, self._log_error)
        m = self.sim.metrics
        if self.touchdown_wall is None and m.mode == FlightMode.LANDED:
            self.touchdown_wall = self.node.now()
            self.touchdown_sim_t = m.time
            self.node.logger.info(
                f"simulator: touchdown on {self.sim.touchdown_on} at sim time {m.time:.2f} s, "
                f"altitude {m.altitude:.2f} m"
            )
        if m.done and not self._reported_done:
            self._reported_done = True
            self.node.logger.info(f"simulator: task {self._outcome(m)} at {m.time:.2f} s")
        dur = self.params["duration_s"]
        if dur > 0.0 and self.sim.time >= dur and not self._stopped:
            self._stopped = True
            self.node.logger.info(f"simulator: duration {dur} s reached; shutting down")
            self.node.shutdown()

    @staticmethod
    def _outcome(m: DroneMetrics) -> str:
        if m.success:
            return f"reached the target in {m.time_to_target:.2f} s"
        if m.collided:
            return f"failed: collision ({m.collisions})"
        if m.reached:
            return "reached the target after a collision"
        return f"failed: time limit, {m.distance:.2f} m from the target"

    def _flush_history(self) -> None:
        h = self.sim.history()
        if h.shape[0]:
            self._log["phys"].extend(h)
            self.sim.clear_history()

    def on_camera(self) -> None:
        """Render, apply the condition's camera noise, publish one frame stamped ``node.now()``."""
        t0 = time.perf_counter()
        try:
            img = self._effects(self.sim.render())
        except Exception as e:  # noqa: BLE001 - a rendering fault must not kill the node
            self.camera_errors += 1
            if self.camera_errors == 1:
                self.node.logger.error(f"simulator: render failed: {e!r}")
            return
        stamp = self.node.now()
        render_s = time.perf_counter() - t0
        sec, nsec = _split_stamp(stamp)
        n = self.node
        h, w, _ = img.shape
        msg = n.msg(
            "sensor_msgs/msg/Image",
            header=self._header(n, sec, nsec, "camera_optical_frame"),
            height=h,
            width=w,
            encoding="rgb8",
            is_bigendian=0,
            step=w * 3,
            data=img.tobytes(),
        )
        self._image_pub.publish(msg)
        self._log["frames"].append((sec * 1_000_000_000 + nsec, self.sim.time, render_s))

    @staticmethod
    def _header(n: port.Node, sec: int, nsec: int, frame: str) -> Any:
        return n.msg(
            "std_msgs/msg/Header",
            stamp=n.msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec),
            frame_id=frame,
        )

    def publish_odom(self) -> None:
        """Publish the true state (odometry) and the task status."""
        n = self.node
        sim = self.sim
        sec, nsec = _split_stamp(n.now())
        x, y, z = sim.position.tolist()
        qw, qx, qy, qz = sim.quaternion.tolist()
        lin, ang = sim.body_twist()
        vec = "geometry_msgs/msg/Vector3"
        msg = n.msg(
            "nav_msgs/msg/Odometry",
            header=self._header(n, sec, nsec, "odom"),
            child_frame_id="base_link",
            pose=n.msg(
                "geometry_msgs/msg/PoseWithCovariance",
                pose=n.msg(
                    "geometry_msgs/msg/Pose",
                    position=n.msg("geometry_msgs/msg/Point", x=x, y=y, z=z),
                    orientation=n.msg("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw),
                ),
            ),
            twist=n.msg(
                "geometry_msgs/msg/TwistWithCovariance",
                twist=n.msg(
                    "geometry_msgs/msg/Twist",
                    linear=n.msg(vec, x=float(lin[0]), y=float(lin[1]), z=float(lin[2])),
                    angular=n.msg(vec, x=float(ang[0]), y=float(ang[1]), z=float(ang[2])),
                ),
            ),
        )
        self._odom_pub.publish(msg)
        m = sim.metrics
        values = {
            "sim_time_s": f"{m.time:.3f}",
            "distance_m": f"{m.distance:.3f}",
            "min_distance_m": f"{m.min_distance:.3f}",
            "altitude_m": f"{m.altitude:.3f}",
            "reached": str(m.reached).lower(),
            "time_to_target_s": "nan"
            if math.isnan(m.time_to_target)
            else f"{m.time_to_target:.3f}",
            "collisions": str(m.collisions),
            "success": str(m.success).lower(),
            "done": str(m.done).lower(),
            "mode": m.mode,
        }
        status = n.msg(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=2 if m.collided else 0,  # ERROR / OK
            name="drone_task",
            message=self._outcome(m) if m.done else "flying to the target",
            hardware_id="simulator",
            values=[
                n.msg("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in values.items()
            ],
        )
        self._task_pub.publish(
            n.msg(
                "diagnostic_msgs/msg/DiagnosticArray",
                header=self._header(n, sec, nsec, ""),
                status=[status],
            )
        )

    # -- log -----------------------------------------------------------------------------------

    def log_arrays(self) -> dict[str, np.ndarray]:
        """The run log as arrays (the ``.npz`` contents).

        Keys: ``frame_stamp_ns`` int64 / ``frame_stamp`` s / ``frame_sim_t`` (sim time of the
        frame, s: with ``frame_stamp`` it maps ROS time to the simulator's clock) /
        ``frame_render_s`` /
        ``frame_latency_s`` (receive time of the first setpoint carrying the frame's stamp minus
        the stamp; NaN = unmatched, always with a plain Twist), each ``(F,)``; ``cmd_recv`` s and
        ``cmd_stamp_ns`` (0 for a plain Twist) ``(C,)``, ``cmd_twist`` ``(C, 4)`` (vx, vy, vz
        m/s, yaw rate rad/s);
        ``land_recv`` s ``(L,)``; ``phys_<col>`` for col in the drone's ``HISTORY_COLUMNS``
        (100 Hz rows, sim time since reset); ``start_wall`` (``node.now()`` at sim time 0, s);
        the world (:func:`~ltc_controller.sim.drone.plot.world_arrays`: ``target``,
        ``obstacles``, ``world_seed``, ``success_radius_m``, ``time_limit_s``). Plot it with
        :func:`~ltc_controller.sim.drone.plot.plot_drone_run`.
        """
        self._flush_history()
        frames, cmds, land, phys = (self._log.read(g) for g in ("frames", "cmds", "land", "phys"))
        fs, cs = np.array(frames["frame_stamp_ns"]), np.array(cmds["cmd_stamp_ns"])
        twist = [cmds[c] for c in ("cmd_vx", "cmd_vy", "cmd_vz", "cmd_yaw_rate")]
        out: dict[str, np.ndarray] = {
            "frame_stamp_ns": fs,
            "frame_stamp": fs.astype(np.float64) * 1e-9,
            "frame_sim_t": np.array(frames["frame_sim_t"]),
            "frame_render_s": np.array(frames["frame_render_s"]),
            "frame_latency_s": frame_latencies(fs, cs, cmds["cmd_recv"]),
            "cmd_recv": np.array(cmds["cmd_recv"]),
            "cmd_stamp_ns": cs,
            "cmd_twist": np.stack(twist, axis=1) if twist[0].size else np.zeros((0, 4)),
            "land_recv": np.array(land["land_recv"]),
            "start_wall": np.asarray(self._start_wall),
            **world_arrays(self.sim.world),
        }
        for key in PHYS_COLUMNS:
            out[key] = np.array(phys[key])
        return out

    def summary(self, arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """JSON-ready run summary (units in the key names; None where undefined)."""
        a = arrays if arrays is not None else self.log_arrays()
        m = self.sim.metrics
        rs = a["frame_render_s"]
        lat = a["frame_latency_s"]
        lat = lat[np.isfinite(lat)]
        return {
            "scenario": "drone",
            "frames_published": int(a["frame_stamp_ns"].size),
            "commands_received": int(a["cmd_recv"].size),
            "land_requests": int(a["land_recv"].size),
            "bad_commands": self.bad_commands,
            "physics_overruns": self.physics_overruns,
            "camera_errors": self.camera_errors,
            "log_errors": self.log_errors,
            "duration_s": float(m.time),
            "wall_duration_s": self.node.now() - self._start_wall,
            "success": m.success,
            "reached": m.reached,
            "time_to_target_s": None if math.isnan(m.time_to_target) else m.time_to_target,
            "final_distance_m": m.distance,
            "min_distance_m": m.min_distance,
            "collisions": m.collisions,
            "timed_out": m.timed_out,
            "mode": m.mode,
            "final_altitude_m": m.altitude,
            "land_received_wall_s": self.land_wall,
            "land_received_sim_s": self.land_sim_t,
            "hover_speed_mps": self.hover_speed_mps,
            "touchdown_wall_s": self.touchdown_wall,
            "touchdown_sim_s": self.touchdown_sim_t,
            "touchdown_on": self.sim.touchdown_on or None,
            "distance_flown_m": float(
                np.sum(
                    np.sqrt(
                        np.sum(
                            np.diff(np.stack([a["phys_x"], a["phys_y"], a["phys_z"]]), axis=1) ** 2,
                            axis=0,
                        )
                    )
                )
            )
            if a["phys_t"].size > 1
            else 0.0,
            "render_mean_s": float(rs.mean()) if rs.size else None,
            "twist_type": self._twist_type,
            "latency_matched_frames": int(lat.size),
            "latency_p50_s": float(np.percentile(lat, 50.0)) if lat.size else None,
            "latency_p99_s": float(np.percentile(lat, 99.0)) if lat.size else None,
            "world_seed": int(self.sim.world.seed),
            "condition": self.condition.name,
            "params": self.params,
        }

    def write_log(self, path: str | Path) -> dict[str, Any]:
        """Save the log as ``path`` (``.npz``, see :meth:`log_arrays`) and the summary beside it
        (``.json``). Creates parent folders.

        Raises:
            OSError: the files cannot be written.
        """
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_suffix(".npz")
        p.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.log_arrays()
        np.savez(p, **arrays)  # type: ignore[arg-type]
        summ = self.summary(arrays)
        p.with_suffix(".json").write_text(json.dumps(summ, indent=2) + "\n")
        if p.with_suffix(".parts") == self._log.folder:  # the .npz holds it all now
            self._log.restart()
        return summ

    @property
    def log_errors(self) -> int:
        """Run-log writes that failed (the first is logged)."""
        return self._log.errors

    @property
    def log_dir(self) -> Path:
        """The folder the run log's columns stream to (``<log>.parts`` after :meth:`open_log`)."""
        return self._log.folder

    def open_log(self, path: str | Path) -> None:
        """Stream the run log to ``<path without suffix>.parts/`` from now on (rows already
        recorded move with it), so a killed simulator leaves its flight there.

        Raises:
            OSError: the folder cannot be created.
        """
        self._log.move_to(Path(path).with_suffix(".parts"))

    def close(self) -> None:
        """Cancel timers, free the renderer, close the run log (a temporary one is removed;
        ``<log>.parts`` stays unless :meth:`write_log` turned it into the ``.npz``)."""
        for t in self._timers:
            t.cancel()
        self.sim.close()
        self._log.close()
