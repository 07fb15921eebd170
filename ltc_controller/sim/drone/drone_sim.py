"""Closed-loop drone simulation: a Crazyflie 2.x in a seeded world, MuJoCo physics and camera.

Time is simulation time in seconds since :meth:`DroneSim.reset`. :meth:`DroneSim.step` advances
it in fixed physics steps (``1 / physics_rate_hz``, 500 Hz), holding the latest velocity setpoint
given to :meth:`DroneSim.set_command` (zero-order hold), as an offboard link does. Each physics step
runs the attitude loop and the mixer; every ``physics_rate_hz / control_rate_hz`` steps the
velocity loop (:class:`~.quadrotor.VelocityController`). The identified linear drag is applied as
an external force at the centre of mass; gravity, rigid-body motion and contacts are MuJoCo's.

Flight modes: ``flying`` (tracking the setpoint), ``landing`` (after :meth:`DroneSim.land`: zero
horizontal velocity, yaw held, descent at ``land_speed_mps``; setpoints are ignored) and
``landed`` (touchdown: the motors are disarmed; :attr:`DroneSim.touchdown_on` names what the
drone rests on). Touchdown is the first ground contact while landing, or, on top of an obstacle
(the chair's seat), a supporting contact (normal within :data:`SUPPORT_MAX_TILT_DEG` of vertical,
the drone above it) once the drone is at rest there (speed below :data:`REST_SPEED_MPS`): a
descent stopped by an obstacle's top has landed, it is not left descending with armed motors.

Collisions: a contact between the airframe's collision sphere and anything but the ground, or the
ground while ``flying``, starts a collision; :attr:`DroneMetrics.collisions` counts their starts.
A supporting contact while landing is the touchdown, not a collision, and after touchdown
(disarmed, at rest) no contact is one; a contact from the side while landing still is one.
Contacts less than :data:`COLLISION_DEBOUNCE_S` after the previous one belong to the same collision
(a drone still pushed against a trunk bounces off and back).

Task (:class:`DroneMetrics`): reach a horizontal distance ``success_radius_m`` from the target
before ``time_limit_s`` without a collision before it.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.extras import needs_extra
from ltc_controller.sim.drone.quadrotor import (
    DEFAULT_AIRFRAME,
    ControllerGains,
    QuadrotorParams,
    VelocityController,
    load_quadrotor,
)
from ltc_controller.sim.drone.world import (
    CAMERA_NAME,
    DRONE_BODY,
    DRONE_GEOM_GROUP,
    DroneWorld,
    DroneWorldStyle,
    WorldParams,
    build_mjcf,
    generate_world,
)

__all__ = [
    "COLLISION_DEBOUNCE_S",
    "HISTORY_COLUMNS",
    "REST_SPEED_MPS",
    "SUPPORT_MAX_TILT_DEG",
    "DroneMetrics",
    "DroneSim",
    "FlightMode",
]

#: Contacts closer together than this (s) count as one collision.
COLLISION_DEBOUNCE_S = 1.0
#: A contact whose normal is within this of vertical, below the drone, supports it (a top).
SUPPORT_MAX_TILT_DEG = 30.0
#: Landing on an obstacle's top: touchdown once the drone's speed is below this (m/s).
REST_SPEED_MPS = 0.05

#: Columns of :meth:`DroneSim.history`, one row per velocity-loop tick: time (s), position (m),
#: yaw (rad), world velocity (m/s), distance to target (m), collision count, held setpoint
#: (body frame, m/s and rad/s).
HISTORY_COLUMNS = (
    "t",
    "x",
    "y",
    "z",
    "yaw",
    "vx",
    "vy",
    "vz",
    "distance",
    "collisions",
    "cmd_vx",
    "cmd_vy",
    "cmd_vz",
    "cmd_yaw_rate",
)


class FlightMode:
    """Flight mode names (strings, for logs and messages)."""

    FLYING = "flying"
    LANDING = "landing"
    LANDED = "landed"


@dataclass(frozen=True)
class DroneMetrics:
    """Task metrics at one instant.

    Attributes:
        time: simulation time (s).
        distance: horizontal distance to the target (m). min_distance: its minimum so far.
        altitude: height of the centre of mass above the ground (m).
        reached: came within ``success_radius_m`` before the time limit.
        time_to_target: when it first did (s); NaN if not.
        collisions: collisions started since reset. collided: ``collisions > 0``.
        timed_out: ``time >= time_limit_s`` without reaching the target.
        success: reached with no collision before it.
        done: reached, collided or timed out (an episode runner stops here).
        mode: flight mode (:class:`FlightMode`).
    """

    time: float
    distance: float
    min_distance: float
    altitude: float
    reached: bool
    time_to_target: float
    collisions: int
    collided: bool
    timed_out: bool
    success: bool
    done: bool
    mode: str


def _airframe_xml(
    q: QuadrotorParams, start: tuple[float, float, float, float], style: DroneWorldStyle
) -> tuple[str, str]:
    """The airframe's body (free joint, identified inertia, cameras) and its other elements."""
    root = ET.parse(q.mjcf_path).getroot()
    asset_dir = q.mjcf_path.parent / "assets"
    for mesh in root.iter("mesh"):
        mesh.set("file", str(asset_dir / mesh.get("file", "")))
    body = root.find(f"./worldbody/body[@name='{DRONE_BODY}']")
    if body is None:
        raise KeyError(f"{q.mjcf_path}: no body {DRONE_BODY!r}")
    x, y, z, yaw = start
    body.set("pos", f"{x:.4f} {y:.4f} {z:.4f}")
    body.set("euler", f"0 0 {math.degrees(yaw):.4f}")
    body.insert(0, ET.Element("freejoint", name="drone_root"))
    inertial = body.find("inertial")
    if inertial is None:
        raise KeyError(f"{q.mjcf_path}: body {DRONE_BODY!r} has no inertial")
    inertial.set("mass", f"{q.mass_kg:.6g}")  # identified (params.toml), not the MJCF's CAD mass
    inertial.set("diaginertia", " ".join(f"{v:.6g}" for v in q.inertia))
    p = style.camera_pitch_rad
    body.append(
        ET.Element(
            "camera",
            name=CAMERA_NAME,
            pos=f"{style.camera_x_m:.4f} 0 0",
            xyaxes=f"0 -1 0 {math.sin(p):.6f} 0 {math.cos(p):.6f}",
            fovy=f"{style.camera_fovy_deg:.2f}",
        )
    )
    body.append(
        ET.Element(
            "camera", name="chase", pos="-0.9 0 0.35", xyaxes="0 -1 0 0.36 0 0.93", fovy="60"
        )
    )
    parts = [
        ET.tostring(e, encoding="unicode")
        for tag in ("asset", "default", "actuator")
        for e in root.findall(tag)
    ]
    return ET.tostring(body, encoding="unicode"), "\n".join(parts)


class DroneSim:
    """A quadrotor in a seeded world.

    Args:
        world_seed: seed for :func:`~.world.generate_world` (ignored when ``world`` is given).
        world_params: world distribution (default :class:`~.world.WorldParams`).
        world: a generated world to fly in instead.
        style: appearance.
        airframe: a ``drone-models`` airframe (:data:`~.quadrotor.AIRFRAMES`).
        gains: controller gains and limits.
        physics_rate_hz: physics and attitude-loop rate (Hz).
        control_rate_hz: velocity-loop rate (Hz); ``physics_rate_hz`` must be a multiple.
        image_width, image_height: camera image size (pixels); default 200 x 78, the policies'
            input size (``runtime/preprocess.py``), so the car's training pipeline applies.
        render_enabled: False skips the renderer (physics, metrics and expert only).
        record_history: keep one row per velocity-loop tick (:data:`HISTORY_COLUMNS`).

    Raises:
        ValueError: bad rates or sizes; unknown airframe.
        WorldGenerationError: no reachable world for the seed.
        MissingExtra: the ``[sim]`` extra (mujoco, drone-models) is not installed.

    Rendering needs an OpenGL backend; ``MUJOCO_GL=osmesa`` is set if unset and there is no display.
    """

    def __init__(
        self,
        world_seed: int = 0,
        *,
        world_params: WorldParams | None = None,
        world: DroneWorld | None = None,
        style: DroneWorldStyle | None = None,
        airframe: str = DEFAULT_AIRFRAME,
        gains: ControllerGains | None = None,
        physics_rate_hz: float = 500.0,
        control_rate_hz: float = 100.0,
        image_width: int = 200,
        image_height: int = 78,
        render_enabled: bool = True,
        record_history: bool = True,
    ) -> None:
        if not (physics_rate_hz > 0.0 and control_rate_hz > 0.0):
            raise ValueError("physics_rate_hz and control_rate_hz must be > 0")
        ratio = physics_rate_hz / control_rate_hz
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"physics_rate_hz={physics_rate_hz} must be a multiple of control_rate_hz="
                f"{control_rate_hz}"
            )
        if image_width < 1 or image_height < 1 or max(image_width, image_height) > 4096:
            raise ValueError(f"image size {image_width}x{image_height}: expected 1..4096 pixels")
        self.world = world if world is not None else generate_world(world_seed, world_params)
        self.params = self.world.params
        self.style = style if style is not None else DroneWorldStyle()
        self.quad = load_quadrotor(airframe)
        self.controller = VelocityController(self.quad, gains)
        self.physics_dt = 1.0 / physics_rate_hz
        self._substeps = int(round(ratio))
        self.control_dt = self._substeps * self.physics_dt
        self.image_width, self.image_height = int(image_width), int(image_height)
        self.record_history = record_history
        body, parts = _airframe_xml(self.quad, self.world.start, self.style)
        self.xml = build_mjcf(self.world, self.style, body, parts)
        if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
            os.environ["MUJOCO_GL"] = "osmesa"
        with needs_extra("sim", "the MuJoCo simulator"):
            import mujoco

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(self.xml)
        self.model.opt.timestep = self.physics_dt
        self.data = mujoco.MjData(self.model)
        self._body = int(self.model.body(DRONE_BODY).id)
        self._col_geom = int(self.model.geom("col_sphere").id)
        self._ground = int(self.model.geom("ground").id)
        self._yaw_sign = tuple(k * self.quad.thrust2torque for k in self.quad.mixing[2])
        self._renderer: Any = None
        self._scene_option = mujoco.MjvOption()
        if render_enabled:
            vis = self.model.vis.global_
            vis.offwidth = max(vis.offwidth, self.image_width)
            vis.offheight = max(vis.offheight, self.image_height)
            self._renderer = mujoco.Renderer(self.model, self.image_height, self.image_width)
        self._thrust = [0.0, 0.0, 0.0, 0.0]
        self._rows: list[tuple[float, ...]] = []
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Hover at the world's start: time 0, zero setpoint, metrics and history cleared."""
        self._mj.mj_resetData(self.model, self.data)
        x, y, z, yaw = self.world.start
        self.data.qpos[0:7] = (x, y, z, math.cos(0.5 * yaw), 0.0, 0.0, math.sin(0.5 * yaw))
        self._mj.mj_forward(self.model, self.data)
        self.controller.reset(yaw)
        self.time = 0.0
        self._carry = 0.0
        self._tick = 0
        self.command: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self.mode = FlightMode.FLYING
        self.armed = True
        self._collisions = 0
        self._in_contact = False
        self._last_contact_t = -math.inf
        self.last_collision = ""
        #: what the drone touched down on (``ground``, ``target_seat``, ...); "" before touchdown
        self.touchdown_on = ""
        self._reached_at = math.nan
        self._collided_before_reach = False
        self._min_dist = self.world.distance_to_target(x, y)
        self._rows.clear()
        self._velocity_tick()
        self._record()

    def set_command(self, vx: float, vy: float, vz: float, yaw_rate: float) -> bool:
        """Hold a body-frame velocity setpoint (REP 103: m/s forward, left, up; rad/s about z)
        until the next one; clipped to the controller's limits.

        Returns:
            False, keeping the previous setpoint, if a value is not finite; the setpoint is
            stored but not flown while landing or landed.
        """
        if not all(math.isfinite(v) for v in (vx, vy, vz, yaw_rate)):
            return False
        self.command = self.controller.clip_setpoint(
            float(vx), float(vy), float(vz), float(yaw_rate)
        )
        return True

    def land(self) -> None:
        """Descend at ``land_speed_mps`` with zero horizontal velocity; disarm on touchdown.
        Irreversible until :meth:`reset`."""
        if self.mode == FlightMode.FLYING:
            self.mode = FlightMode.LANDING

    def step(self, dt: float) -> None:
        """Advance simulation time by ``dt`` seconds in whole physics steps (the remainder carries
        over to the next call).

        Raises:
            ValueError: ``dt`` negative or not finite.
        """
        if not (math.isfinite(dt) and dt >= 0.0):
            raise ValueError(f"DroneSim.step: dt={dt}; expected finite >= 0 s")
        self._carry += dt
        n = int((self._carry + 1e-9) / self.physics_dt)
        self._carry = max(0.0, self._carry - n * self.physics_dt)
        for _ in range(n):
            self.physics_step()

    def _pose(self) -> tuple[tuple[float, ...], list[float]]:
        w, x, y, z = self.data.qpos[3:7].tolist()
        R = (
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        )
        return R, self.data.qvel.tolist()

    def _velocity_tick(self) -> None:
        R, qvel = self._pose()
        if self.mode == FlightMode.FLYING:
            sp = self.command
        else:
            sp = (0.0, 0.0, -self.controller.g.land_speed_mps, 0.0)
        self.controller.velocity_loop(sp, R, (qvel[0], qvel[1], qvel[2]), self.control_dt)

    def physics_step(self) -> None:
        """One physics step: velocity loop when due, attitude loop, mixer, drag, ``mj_step``,
        contacts, task bookkeeping."""
        d = self.data
        tick_due = self._tick % self._substeps == 0
        if tick_due and self._tick > 0:
            self._velocity_tick()
        R, qvel = self._pose()
        th = self._thrust
        if self.armed:
            self.controller.attitude_loop(R, (qvel[3], qvel[4], qvel[5]), th)
            ys = self._yaw_sign
            d.ctrl[:] = (
                th[0],
                th[1],
                th[2],
                th[3],
                ys[0] * th[0],
                ys[1] * th[1],
                ys[2] * th[2],
                ys[3] * th[3],
            )
        else:
            d.ctrl[:] = 0.0
        # Linear drag R diag(D) R^T v at the centre of mass (world frame).
        D0, D1, D2 = self.quad.drag
        vx, vy, vz = qvel[0], qvel[1], qvel[2]
        bx = D0 * (R[0] * vx + R[3] * vy + R[6] * vz)
        by = D1 * (R[1] * vx + R[4] * vy + R[7] * vz)
        bz = D2 * (R[2] * vx + R[5] * vy + R[8] * vz)
        d.xfrc_applied[self._body, 0:3] = (
            R[0] * bx + R[1] * by + R[2] * bz,
            R[3] * bx + R[4] * by + R[5] * bz,
            R[6] * bx + R[7] * by + R[8] * bz,
        )
        self._mj.mj_step(self.model, d)
        self._tick += 1
        self.time = self._tick * self.physics_dt
        self._contacts()
        px, py = d.qpos[0], d.qpos[1]
        dist = self.world.distance_to_target(float(px), float(py))
        if dist < self._min_dist:
            self._min_dist = dist
        if (
            math.isnan(self._reached_at)
            and dist <= self.params.success_radius_m
            and self.time <= self.params.time_limit_s + 1e-9
        ):
            self._reached_at = self.time
            self._collided_before_reach = self._collisions > 0
        if self._tick % self._substeps == 0:
            self._record()

    def _contacts(self) -> None:
        d = self.data
        touching = False
        hit = ""
        if d.ncon:
            cg = self._col_geom
            for i, (g1, g2) in enumerate(d.contact.geom[: d.ncon].tolist()):
                if cg not in (g1, g2):
                    continue
                if self.mode == FlightMode.LANDED:
                    continue  # disarmed at rest: leaning on the chair's back is no collision
                other = g2 if g1 == cg else g1
                name = self._mj.mj_id2name(self.model, self._mj.mjtObj.mjOBJ_GEOM, other) or ""
                if other == self._ground:
                    if self.mode == FlightMode.LANDING:
                        self._touch_down(name)
                        continue
                elif self.mode == FlightMode.LANDING and self._supports(i):
                    # Descending onto an obstacle's top: landed once at rest on it.
                    if self._at_rest():
                        self._touch_down(name)
                    continue
                touching = True
                hit = name
        if touching:
            if not self._in_contact and self.time - self._last_contact_t > COLLISION_DEBOUNCE_S:
                self._collisions += 1
                self.last_collision = hit
            self._last_contact_t = self.time
        self._in_contact = touching

    def _supports(self, k: int) -> bool:
        """Contact ``k`` holds the drone up: its normal near vertical, its point below the
        centre of mass (MuJoCo's contact frame: the first row is the normal)."""
        c = self.data.contact[k]
        return bool(
            abs(float(c.frame[2])) >= math.cos(math.radians(SUPPORT_MAX_TILT_DEG))
            and float(c.pos[2]) < float(self.data.qpos[2])
        )

    def _at_rest(self) -> bool:
        v = self.data.qvel[0:3]
        return float(math.sqrt(float(v @ v))) < REST_SPEED_MPS

    def _touch_down(self, on: str) -> None:
        self.mode = FlightMode.LANDED
        self.armed = False
        self.touchdown_on = on

    def _record(self) -> None:
        if not self.record_history:
            return
        d = self.data
        R, qvel = self._pose()
        x, y, z = d.qpos[0:3].tolist()
        c = self.command
        self._rows.append(
            (
                self.time,
                x,
                y,
                z,
                math.atan2(R[3], R[0]),
                qvel[0],
                qvel[1],
                qvel[2],
                self.world.distance_to_target(x, y),
                float(self._collisions),
                c[0],
                c[1],
                c[2],
                c[3],
            )
        )

    # -- observations --------------------------------------------------------------------------

    @property
    def position(self) -> NDArray[np.float64]:
        """Centre of mass in the world frame (m), shape ``(3,)`` (a copy)."""
        return np.array(self.data.qpos[0:3], dtype=np.float64)

    @property
    def quaternion(self) -> NDArray[np.float64]:
        """Body-to-world orientation ``(w, x, y, z)``, shape ``(4,)`` (a copy)."""
        return np.array(self.data.qpos[3:7], dtype=np.float64)

    @property
    def yaw(self) -> float:
        """Heading about world z (rad, 0 = +x)."""
        R, _ = self._pose()
        return math.atan2(R[3], R[0])

    @property
    def velocity(self) -> NDArray[np.float64]:
        """World-frame linear velocity (m/s), shape ``(3,)``."""
        return np.array(self.data.qvel[0:3], dtype=np.float64)

    def body_twist(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(linear, angular)`` velocity in the body frame (m/s, rad/s), each ``(3,)``: the
        ``twist`` of a ``nav_msgs/Odometry`` with ``child_frame_id`` ``base_link``."""
        R, qvel = self._pose()
        Rm = np.array(R).reshape(3, 3)
        return Rm.T @ np.array(qvel[0:3]), np.array(qvel[3:6], dtype=np.float64)

    @property
    def altitude(self) -> float:
        """Height of the centre of mass above the ground (m)."""
        return float(self.data.qpos[2])

    @property
    def motor_thrusts(self) -> tuple[float, ...]:
        """The four motor thrusts of the last physics step (N; zeros when disarmed)."""
        return tuple(self.data.ctrl[0:4].tolist())

    @property
    def metrics(self) -> DroneMetrics:
        """Task metrics now."""
        x, y, z = self.data.qpos[0:3].tolist()
        reached = not math.isnan(self._reached_at)
        timed_out = not reached and self.time >= self.params.time_limit_s - 1e-9
        success = reached and not self._collided_before_reach
        return DroneMetrics(
            time=self.time,
            distance=self.world.distance_to_target(x, y),
            min_distance=self._min_dist,
            altitude=z,
            reached=reached,
            time_to_target=self._reached_at,
            collisions=self._collisions,
            collided=self._collisions > 0,
            timed_out=timed_out,
            success=success,
            done=reached or self._collisions > 0 or timed_out,
            mode=self.mode,
        )

    def history(self) -> NDArray[np.float64]:
        """Recorded rows, shape ``(K, len(HISTORY_COLUMNS))``."""
        if not self._rows:
            return np.zeros((0, len(HISTORY_COLUMNS)))
        return np.asarray(self._rows, dtype=np.float64)

    def clear_history(self) -> None:
        """Drop recorded rows."""
        self._rows.clear()

    # -- rendering -----------------------------------------------------------------------------

    def render(self, camera: str = CAMERA_NAME) -> NDArray[np.uint8]:
        """The camera image now.

        Args:
            camera: ``"front"`` (the drone's forward camera; its own meshes hidden) or ``"chase"``.

        Returns:
            RGB image ``(image_height, image_width, 3)`` uint8 (a new array).

        Raises:
            RuntimeError: renderer disabled or closed.
        """
        if self._renderer is None:
            raise RuntimeError("DroneSim.render: renderer disabled or closed")
        mj = self._mj
        mj.mj_kinematics(self.model, self.data)
        mj.mj_camlight(self.model, self.data)
        self._scene_option.geomgroup[DRONE_GEOM_GROUP] = 0 if camera == CAMERA_NAME else 1
        r = self._renderer
        r.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        r.scene.flags[mj.mjtRndFlag.mjRND_FOG] = self.style.fog_rgb is not None
        return np.array(r.render(), dtype=np.uint8, copy=True)

    def close(self) -> None:
        """Free the renderer (idempotent)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> DroneSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
