"""Simulator node: runs :class:`LaneKeepingSim` in real time behind the transport port.

``scenario:=drone`` runs the drone scenario instead (:mod:`ltc_controller.nodes.drone_simulator`:
``cmd_vel`` Twist and ``land`` in; camera, odometry and the task's ground truth out); the car's
topics below are then not created.

Topics (names resolve under the node's namespace unless absolute):

- ``/camera/image_raw`` sensor_msgs/msg/Image (rgb8), SENSOR_DATA QoS, published at
  ``camera_rate_hz``;
- ``ackermann_cmd`` ackermann_msgs/msg/AckermannDriveStamped (the final, gated command), RELIABLE,
  subscribed;
- ``odom`` nav_msgs/msg/Odometry (``odom`` -> ``base_link`` = rear axle), RELIABLE, published at
  ``odom_rate_hz``.

Timing: the physics timer advances the simulation by the *steady-clock* time elapsed since its last
tick (in fixed physics steps, capped at ``max_catchup_s``), so simulated time follows the wall clock
even when a tick is skipped. Camera frames are stamped with ``node.now()`` at render time; the
pipeline copies that stamp into the command header, so ``receive time - stamp`` of the first
command carrying a frame's stamp is that frame's image-to-command latency.

Run log: streamed to disk while the node runs (:mod:`.run_log`: one ``.npy`` per column in the
folder ``<log>.parts/``, flushed every :data:`~.run_log.LOG_FLUSH_S`), so memory stays flat
however long the run and a killed simulator loses at most the last second.
:meth:`SimulatorNode.open_log` (called by ``ltc-controller node simulator --log FILE`` before
spinning) puts that folder next to the log; without it the columns go to a temporary folder.
:meth:`SimulatorNode.write_log` after ``node.spin()`` returns writes the ``.npz`` (same keys as
ever, see :meth:`SimulatorNode.log_arrays`) and the ``.json`` summary, then removes the folder.
The drone scenario streams its own log the same way (:class:`~.run_log.RunLog`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.interfaces.command_axes import TWIST, TWIST_STAMPED
from ltc_controller.nodes.run_log import RunLog, frame_latencies
from ltc_controller.params import COMMON, ParameterError, ParamSpec, resolve, scenario_mismatch
from ltc_controller.sim.drone.conditions import DRONE_CONDITIONS
from ltc_controller.sim.lane_sim import HISTORY_COLUMNS, LaneKeepingSim
from ltc_controller.transport import port

PARAMS: tuple[ParamSpec, ...] = (
    *COMMON,
    ParamSpec(
        "scenario",
        str,
        "car",
        "car: lane keeping (AckermannDriveStamped); drone: fly to a target (Twist, land)",
        choices=("car", "drone"),
        read_only=True,
    ),
    ParamSpec("track_seed", int, 0, "seed of the procedural track", min=0, read_only=True),
    ParamSpec("track_length_m", float, 600.0, "approximate lap length", "m", 100.0, 20000.0),
    ParamSpec("lane_width_m", float, 3.75, "distance between edge markings", "m", 2.0, 10.0),
    ParamSpec("camera_rate_hz", float, 20.0, "camera frame rate", "Hz", 0.1, 200.0),
    ParamSpec("physics_rate_hz", float, 100.0, "fixed physics step rate", "Hz", 10.0, 2000.0),
    ParamSpec("odom_rate_hz", float, 50.0, "odometry publish rate (0 = off)", "Hz", 0.0, 1000.0),
    ParamSpec("image_width", int, 200, "camera image width", "px", 8, 4096),
    ParamSpec("image_height", int, 78, "camera image height", "px", 8, 4096),
    ParamSpec(
        "initial_speed", float, 0.0, "speed at start, held until a command", "m/s", 0.0, 30.0
    ),
    ParamSpec(
        "duration_s", float, 0.0, "shut the node down after this sim time (0 = never)", "s", 0.0
    ),
    ParamSpec("max_catchup_s", float, 0.1, "largest physics advance per tick", "s", 0.001, 10.0),
    ParamSpec("camera_topic", str, "camera/image_raw", "image topic (relative to the namespace)"),
    ParamSpec("command_topic", str, "ackermann_cmd", "final (gated) command topic"),
    ParamSpec("odom_topic", str, "odom", "odometry topic"),
    ParamSpec("camera_reliable", bool, False, "images reliable instead of sensor-data QoS"),
    ParamSpec("world_seed", int, 0, "drone: seed of the generated world", min=0, read_only=True),
    ParamSpec(
        "drone_condition",
        str,
        "clean",
        "drone: scene condition (training or a shift, sim/drone/conditions.py)",
        choices=tuple(DRONE_CONDITIONS),
        read_only=True,
    ),
    ParamSpec("twist_topic", str, "cmd_vel", "drone: velocity setpoint topic (Twist, body frame)"),
    ParamSpec(
        "twist_type",
        str,
        TWIST,
        "drone: type on twist_topic; TwistStamped carries the camera stamp (latency measured)",
        choices=(TWIST, TWIST_STAMPED),
        read_only=True,
    ),
    ParamSpec("land_topic", str, "land", "drone: landing request topic (std_msgs/Empty)"),
    ParamSpec(
        "task_topic", str, "ground_truth/task", "drone: task metrics topic (DiagnosticArray)"
    ),
)

#: Parameters that only one scenario reads: name -> (scenario, what it is for there). Set to
#: anything but the default with the other scenario, the node refuses to start (as the demo
#: refuses its scenario options) instead of ignoring them.
SCENARIO_PARAMS: dict[str, tuple[str, str]] = {
    "track_seed": ("car", "the seed of the car's track"),
    "track_length_m": ("car", "the lap length of the car's track"),
    "lane_width_m": ("car", "the lane width of the car's track"),
    "initial_speed": ("car", "the car's speed at start"),
    "command_topic": ("car", "the car's Ackermann command topic"),
    "world_seed": ("drone", "the seed of the drone's world"),
    "drone_condition": ("drone", "the drone's scene condition"),
    "twist_topic": ("drone", "the drone's velocity setpoint topic"),
    "twist_type": ("drone", "the type of the drone's setpoints"),
    "land_topic": ("drone", "the drone's landing request topic"),
    "task_topic": ("drone", "the drone's task metrics topic"),
}

#: Columns of the run log by row kind (``.npz`` keys; ``phys_*`` from HISTORY_COLUMNS).
FRAME_COLUMNS = {
    "frame_stamp_ns": np.int64,
    "frame_wall": np.float64,
    "frame_sim_t": np.float64,
    "frame_render_s": np.float64,
}
CMD_COLUMNS = {
    "cmd_recv": np.float64,
    "cmd_stamp_ns": np.int64,
    "cmd_steering": np.float64,
    "cmd_speed": np.float64,
}
PHYS_COLUMNS = {f"phys_{c}": np.float64 for c in HISTORY_COLUMNS}

#: Defaults of every parameter, by name.
DEFAULT_PARAMS: dict[str, Any] = {p.name: p.default for p in PARAMS}


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``params``, type- and range-checked.

    Raises:
        ParameterError: (a ``ValueError``) unknown name, wrong type or value out of range; the
            message names the parameter.
    """
    return resolve(PARAMS, params or {})


def split_stamp(t: float) -> tuple[int, int]:
    """Seconds (float) to ROS ``(sec, nanosec)`` with ``0 <= nanosec < 1e9``."""
    ns = int(round(t * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


def _mean(a: np.ndarray) -> float | None:
    return float(np.mean(a)) if a.size else None


def _percentile(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if a.size else None


class SimulatorNode:
    """Real-time lane-keeping simulator on a transport node.

    With ``scenario:=drone`` the node is a :class:`~.drone_simulator.DroneSimulatorNode`
    (:attr:`drone`), to which the log and close methods delegate.

    Args:
        node: a :class:`ltc_controller.transport.port.Node`.
        params: overrides of :data:`DEFAULT_PARAMS` (see :data:`PARAMS` for units and ranges).
        sim: an already built simulation (tests); default one built from ``params``.

    Raises:
        ValueError: bad parameters (:class:`~ltc_controller.params.ParameterError`), one of
            :data:`SCENARIO_PARAMS` set for the other scenario included.
    """

    drone: Any = None

    def __init__(
        self,
        node: port.Node,
        params: Mapping[str, Any] | None = None,
        sim: LaneKeepingSim | None = None,
    ) -> None:
        self.node = node
        self.params = p = (
            node.declare_parameters(PARAMS) if params is None else resolve_params(params)
        )
        changed = [n for n in SCENARIO_PARAMS if p[n] != DEFAULT_PARAMS[n]]
        problem = scenario_mismatch(p["scenario"], changed, SCENARIO_PARAMS, "scenario:={}")
        if problem:
            raise ParameterError(problem)
        if p["scenario"] == "drone":
            from ltc_controller.nodes.drone_simulator import DroneSimulatorNode

            self.drone = DroneSimulatorNode(node, p)
            return
        if sim is None:
            from ltc_controller.sim.track import TrackParams

            sim = LaneKeepingSim(
                track_seed=p["track_seed"],
                track_params=TrackParams(
                    lane_width_m=p["lane_width_m"], target_length_m=p["track_length_m"]
                ),
                physics_rate_hz=p["physics_rate_hz"],
                image_width=p["image_width"],
                image_height=p["image_height"],
                initial_speed=p["initial_speed"],
            )
        self.sim = sim
        # Run log: streamed to column files (a temporary folder until open_log names one).
        self._log = RunLog({"frames": FRAME_COLUMNS, "cmds": CMD_COLUMNS, "phys": PHYS_COLUMNS})
        self.bad_commands = 0
        self.physics_overruns = 0
        self.camera_errors = 0
        self._start_wall = node.now()
        self._last_steady: float | None = None
        self._stopped = False

        cam_qos = port.RELIABLE if p["camera_reliable"] else port.SENSOR_DATA
        self._image_pub = node.create_publisher("sensor_msgs/msg/Image", p["camera_topic"], cam_qos)
        self._odom_pub = node.create_publisher("nav_msgs/msg/Odometry", p["odom_topic"])
        node.create_subscription(
            "ackermann_msgs/msg/AckermannDriveStamped", p["command_topic"], self.on_command
        )
        self._timers = [
            node.create_timer(1.0 / p["physics_rate_hz"], self.on_physics),
            node.create_timer(1.0 / p["camera_rate_hz"], self.on_camera),
        ]
        if p["odom_rate_hz"] > 0.0:
            self._timers.append(node.create_timer(1.0 / p["odom_rate_hz"], self.publish_odom))
        node.logger.info(
            f"simulator: track seed {p['track_seed']} length {self.sim.track.length:.0f} m, "
            f"camera {p['image_width']}x{p['image_height']} @ {p['camera_rate_hz']} Hz"
        )

    # -- callbacks -----------------------------------------------------------------------------

    def on_command(self, msg: Any) -> None:
        """Apply an AckermannDriveStamped; a non-finite one is counted and ignored."""
        recv = self.node.now()
        try:
            steer = float(msg.drive.steering_angle)
            speed = float(msg.drive.speed)
            stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        except (AttributeError, TypeError, ValueError) as e:
            self._bad_command(f"malformed command ({e})")
            return
        if not self.sim.set_command(steer, speed):
            self._bad_command(f"non-finite command steering={steer} speed={speed}")
            return
        self._log["cmds"].append((recv, stamp_ns, steer, speed))

    def _log_error(self, text: str) -> None:
        self.node.logger.error(f"simulator: {text}")

    def _bad_command(self, why: str) -> None:
        self.bad_commands += 1
        if self.bad_commands == 1:
            self.node.logger.warning(f"simulator: ignoring {why}; further ones are only counted")

    def on_physics(self) -> None:
        """Advance the simulation by the steady time since the last tick."""
        now = self.node.steady()
        if self._last_steady is None:
            dt = 1.0 / self.params["physics_rate_hz"]
        else:
            dt = now - self._last_steady
        self._last_steady = now
        if dt > self.params["max_catchup_s"]:
            self.physics_overruns += 1
            dt = self.params["max_catchup_s"]
        self.sim.step(max(0.0, dt))
        self._flush_history()
        self._log.flush_every(now, self._log_error)
        dur = self.params["duration_s"]
        if dur > 0.0 and self.sim.time >= dur and not self._stopped:
            self._stopped = True
            self.node.logger.info(f"simulator: duration {dur} s reached; shutting down")
            self.node.shutdown()

    def _flush_history(self) -> None:
        h = self.sim.history()
        if h.shape[0]:
            self._log["phys"].extend(h)
            self.sim.clear_history()

    def on_camera(self) -> None:
        """Render and publish one frame stamped ``node.now()``."""
        t0 = time.perf_counter()
        try:
            img = self.sim.render()
        except Exception as e:  # noqa: BLE001 - a rendering fault must not kill the node
            self.camera_errors += 1
            if self.camera_errors == 1:
                self.node.logger.error(f"simulator: render failed: {e!r}")
            return
        stamp = self.node.now()
        render_s = time.perf_counter() - t0
        sec, nsec = split_stamp(stamp)
        n = self.node
        h, w, _ = img.shape
        msg = n.msg(
            "sensor_msgs/msg/Image",
            header=n.msg(
                "std_msgs/msg/Header",
                stamp=n.msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec),
                frame_id="camera_optical_frame",
            ),
            height=h,
            width=w,
            encoding="rgb8",
            is_bigendian=0,
            step=w * 3,
            data=img.tobytes(),
        )
        self._image_pub.publish(msg)
        self._log["frames"].append((sec * 1_000_000_000 + nsec, n.now(), self.sim.time, render_s))

    def publish_odom(self) -> None:
        """Publish the car's pose and velocity (frame ``odom``, child ``base_link`` = rear axle)."""
        n = self.node
        st = self.sim.state
        sec, nsec = split_stamp(n.now())
        msg = n.msg(
            "nav_msgs/msg/Odometry",
            header=n.msg(
                "std_msgs/msg/Header",
                stamp=n.msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec),
                frame_id="odom",
            ),
            child_frame_id="base_link",
            pose=n.msg(
                "geometry_msgs/msg/PoseWithCovariance",
                pose=n.msg(
                    "geometry_msgs/msg/Pose",
                    position=n.msg("geometry_msgs/msg/Point", x=st.x, y=st.y, z=0.0),
                    orientation=n.msg(
                        "geometry_msgs/msg/Quaternion",
                        x=0.0,
                        y=0.0,
                        z=math.sin(0.5 * st.yaw),
                        w=math.cos(0.5 * st.yaw),
                    ),
                ),
            ),
            twist=n.msg(
                "geometry_msgs/msg/TwistWithCovariance",
                twist=n.msg(
                    "geometry_msgs/msg/Twist",
                    linear=n.msg("geometry_msgs/msg/Vector3", x=st.speed, y=0.0, z=0.0),
                    angular=n.msg(
                        "geometry_msgs/msg/Vector3",
                        x=0.0,
                        y=0.0,
                        z=st.yaw_rate(self.sim.vehicle_params),
                    ),
                ),
            ),
        )
        self._odom_pub.publish(msg)

    # -- log -----------------------------------------------------------------------------------

    @property
    def log_errors(self) -> int:
        """Run-log writes that failed (the first is logged)."""
        return int(self.drone.log_errors if self.drone is not None else self._log.errors)

    @property
    def log_dir(self) -> Path:
        """The folder the run log's columns stream to (``<log>.parts`` after :meth:`open_log`)."""
        return Path(self.drone.log_dir if self.drone is not None else self._log.folder)

    def open_log(self, path: str | Path) -> None:
        """Stream the run log to ``<path without suffix>.parts/`` from now on (rows already
        recorded move with it), so a killed simulator leaves its run there.

        Raises:
            OSError: the folder cannot be created.
        """
        if self.drone is not None:
            self.drone.open_log(path)
            return
        self._log.move_to(Path(path).with_suffix(".parts"))

    def frame_latencies(self) -> np.ndarray:
        """Image-to-command latency per published frame (s), NaN where no command carried its
        stamp (the first command carrying it counts). Shape ``(frames,)``."""
        frames, cmds = self._log.read("frames"), self._log.read("cmds")
        return frame_latencies(frames["frame_stamp_ns"], cmds["cmd_stamp_ns"], cmds["cmd_recv"])

    def log_arrays(self) -> dict[str, np.ndarray]:
        """The run log as arrays (the ``.npz`` contents).

        Keys: ``frame_stamp_ns`` int64 / ``frame_stamp`` s / ``frame_wall`` s (published) /
        ``frame_sim_t`` (sim time of the frame, s) / ``frame_render_s`` / ``frame_latency_s``
        (NaN = unmatched), each ``(F,)``;
        ``cmd_recv`` s / ``cmd_stamp_ns`` int64 / ``cmd_stamp`` s / ``cmd_steering`` rad /
        ``cmd_speed`` m/s, each ``(C,)``; ``phys_<col>`` for col in :data:`HISTORY_COLUMNS`,
        each ``(P,)`` (sim time ``t`` in s since reset, pose of the rear axle, lateral error at the
        car centre, ``s`` on the lap, ``progress`` = distance driven along the track); scalars
        ``track_seed``, ``track_length_m``, ``lane_width_m``, ``lane_limit_m`` (largest
        ``|lateral error|`` inside the lane, m), ``wheelbase_m``, ``start_wall`` (``node.now()`` at
        sim time 0, s). The drone scenario's keys: :meth:`.DroneSimulatorNode.log_arrays`.
        """
        if self.drone is not None:
            return dict(self.drone.log_arrays())
        self._flush_history()
        frames, cmds, phys = (self._log.read(g) for g in ("frames", "cmds", "phys"))
        fs, cs = frames["frame_stamp_ns"], cmds["cmd_stamp_ns"]
        out: dict[str, np.ndarray] = {
            "frame_stamp_ns": np.array(fs),
            "frame_stamp": fs.astype(np.float64) * 1e-9,
            "frame_wall": np.array(frames["frame_wall"]),
            "frame_sim_t": np.array(frames["frame_sim_t"]),
            "frame_render_s": np.array(frames["frame_render_s"]),
            "frame_latency_s": frame_latencies(fs, cs, cmds["cmd_recv"]),
            "cmd_recv": np.array(cmds["cmd_recv"]),
            "cmd_stamp_ns": np.array(cs),
            "cmd_stamp": cs.astype(np.float64) * 1e-9,
            "cmd_steering": np.array(cmds["cmd_steering"]),
            "cmd_speed": np.array(cmds["cmd_speed"]),
            "track_seed": np.asarray(self.sim.track.seed),
            "track_length_m": np.asarray(self.sim.track.length),
            "lane_width_m": np.asarray(self.sim.track.lane_width_m),
            "lane_limit_m": np.asarray(self.sim.limit_half_width),
            "wheelbase_m": np.asarray(self.sim.vehicle_params.wheelbase_m),
            "start_wall": np.asarray(self._start_wall),
        }
        for key in PHYS_COLUMNS:
            out[key] = np.array(phys[key])
        return out

    def summary(self, arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """JSON-ready run summary (units in the key names; None where undefined)."""
        if self.drone is not None:
            return dict(self.drone.summary(arrays))
        a = arrays if arrays is not None else self.log_arrays()
        lat = a["frame_latency_s"]
        lat = lat[np.isfinite(lat)]
        d = np.abs(a["phys_lateral_error"])
        limit = float(a["lane_limit_m"])
        out = d > limit
        departures = int(np.count_nonzero(out[1:] & ~out[:-1]) + (1 if out.size and out[0] else 0))
        return {
            "frames_published": int(a["frame_stamp_ns"].size),
            "commands_received": int(a["cmd_recv"].size),
            "bad_commands": self.bad_commands,
            "physics_overruns": self.physics_overruns,
            "camera_errors": self.camera_errors,
            "log_errors": self.log_errors,
            "duration_s": float(a["phys_t"][-1]) if a["phys_t"].size else 0.0,
            "wall_duration_s": self.node.now() - self._start_wall,
            "mean_abs_lateral_error_m": float(d.mean()) if d.size else None,
            "max_abs_lateral_error_m": float(d.max()) if d.size else None,
            "lane_departures": departures,
            "time_out_of_lane_s": float(np.count_nonzero(out)) * self.sim.physics_dt,
            # Odometer (path length driven) and progress along the track centreline.
            "distance_m": float(np.hypot(np.diff(a["phys_x"]), np.diff(a["phys_y"])).sum())
            if d.size
            else 0.0,
            "progress_m": float(a["phys_progress"][-1]) if d.size else 0.0,
            "laps": float(a["phys_progress"][-1]) / self.sim.track.length if d.size else 0.0,
            "latency_matched_frames": int(lat.size),
            "latency_p50_s": _percentile(lat, 50.0),
            "latency_p99_s": _percentile(lat, 99.0),
            "render_mean_s": _mean(a["frame_render_s"]),
            "track_seed": int(self.sim.track.seed),
            "track_length_m": float(self.sim.track.length),
            "lane_width_m": float(self.sim.track.lane_width_m),
            "params": self.params,
        }

    def write_log(self, path: str | Path) -> dict[str, Any]:
        """Save the log as ``path`` (``.npz``, see :meth:`log_arrays`) and the summary as the same
        path with suffix ``.json``. Creates parent folders.

        Returns:
            The summary dict.

        Raises:
            OSError: the files cannot be written.
        """
        if self.drone is not None:
            return dict(self.drone.write_log(path))
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

    def close(self) -> None:
        """Cancel timers, free the renderer, close the run log (a temporary one is removed;
        ``<log>.parts`` stays unless :meth:`write_log` turned it into the ``.npz``)."""
        if self.drone is not None:
            self.drone.close()
            return
        for t in self._timers:
            t.cancel()
        self.sim.close()
        self._log.close()
