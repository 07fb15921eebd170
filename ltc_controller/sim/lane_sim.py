"""Closed-loop lane-keeping simulation: bicycle-model car on a procedural track, rendered by MuJoCo.

Time is simulation time in seconds since :meth:`LaneKeepingSim.reset`. :meth:`LaneKeepingSim.step`
advances it in fixed physics steps (``1 / physics_rate_hz``), applying the latest command given to
:meth:`LaneKeepingSim.set_command` (zero-order hold). The car's pose goes to a MuJoCo mocap body;
:meth:`LaneKeepingSim.render` runs ``mj_forward`` and draws the forward camera.

Lane metrics are measured at the midpoint of the wheelbase (see :meth:`VehicleState.centre`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.extras import needs_extra
from ltc_controller.sim.track import Frenet, Track, TrackParams, generate_track, wrap_angle
from ltc_controller.sim.vehicle import LimitReport, VehicleParams, VehicleState, step_vehicle
from ltc_controller.sim.world import CAMERA_NAME, CAR_BODY, WorldStyle, build_mjcf

#: Columns of :meth:`LaneKeepingSim.history`, one row per physics step.
HISTORY_COLUMNS = ("t", "x", "y", "yaw", "speed", "steering", "lateral_error", "s", "progress")


@dataclass(frozen=True)
class LaneMetrics:
    """Lane metrics at one instant.

    Attributes:
        lateral_error: signed offset of the car centre from the centreline (m, positive left).
        heading_error: car yaw minus track heading (rad, positive = pointing left of the track).
        s: arc length of the car centre on the lap (m, in ``[0, length)``).
        progress: signed distance driven along the track since reset (m; grows by the lap length
            per completed lap, decreases when driving backwards).
        departed: ``|lateral_error| > lane_width / 2 - car width / 2``.
        departures: number of times the car has left the lane since reset.
    """

    lateral_error: float
    heading_error: float
    s: float
    progress: float
    departed: bool
    departures: int


@dataclass
class _History:
    rows: list[tuple[float, ...]] = field(default_factory=list)


class LaneKeepingSim:
    """A car on a seeded track.

    Args:
        track_seed: seed for :func:`generate_track`.
        track_params: track shape (default :class:`TrackParams`).
        lane_width_m: lane width (m); overrides ``track_params.lane_width_m`` when given.
        vehicle_params: car parameters.
        style: scene appearance.
        physics_rate_hz: fixed physics rate (Hz).
        image_width, image_height: camera image size (pixels); the NCP input is 200 x 78.
        initial_speed: speed at reset (m/s).
        render_enabled: False skips the renderer (no OpenGL needed: metrics and expert only).
        record_history: keep one row per physics step (see :data:`HISTORY_COLUMNS`).

    Raises:
        ValueError: non-positive rates or sizes.
        TrackGenerationError: no track for the seed.

    Rendering needs an OpenGL backend; for headless machines set ``MUJOCO_GL=osmesa`` (or ``egl``)
    before importing mujoco. This class sets ``MUJOCO_GL=osmesa`` if it is unset and no display
    is available.
    """

    def __init__(
        self,
        track_seed: int = 0,
        *,
        track_params: TrackParams | None = None,
        lane_width_m: float | None = None,
        vehicle_params: VehicleParams | None = None,
        style: WorldStyle | None = None,
        physics_rate_hz: float = 100.0,
        image_width: int = 200,
        image_height: int = 78,
        initial_speed: float = 0.0,
        render_enabled: bool = True,
        record_history: bool = True,
    ) -> None:
        if not physics_rate_hz > 0.0:
            raise ValueError(f"physics_rate_hz={physics_rate_hz}: expected > 0")
        if image_width < 1 or image_height < 1:
            raise ValueError(f"image size {image_width}x{image_height}: expected >= 1 pixel")
        tp = track_params if track_params is not None else TrackParams()
        if lane_width_m is not None:
            tp = replace(tp, lane_width_m=float(lane_width_m))
        self.track: Track = generate_track(track_seed, tp)
        self.vehicle_params = vehicle_params if vehicle_params is not None else VehicleParams()
        self.style = style if style is not None else WorldStyle()
        self.physics_dt = 1.0 / physics_rate_hz
        self.image_width = int(image_width)
        self.image_height = int(image_height)
        self.initial_speed = float(initial_speed)
        self.record_history = record_history
        self.xml = build_mjcf(self.track, self.style, self.vehicle_params)
        if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
            os.environ["MUJOCO_GL"] = "osmesa"
        with needs_extra("sim", "the MuJoCo simulator"):
            import mujoco  # after MUJOCO_GL is settled

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(self.xml)
        self.data = mujoco.MjData(self.model)
        self._mocap = int(self.model.body(CAR_BODY).mocapid[0])
        self._renderer: Any = None
        self._scene_option = mujoco.MjvOption()
        if render_enabled:
            if max(self.image_width, self.image_height) > 4096:
                raise ValueError("image larger than 4096 pixels")
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.image_width)
            self.model.vis.global_.offheight = max(
                self.model.vis.global_.offheight, self.image_height
            )
            self._renderer = mujoco.Renderer(self.model, self.image_height, self.image_width)
        self.limit_half_width = 0.5 * self.track.lane_width_m - 0.5 * self.vehicle_params.width_m
        self.last_limits: LimitReport | None = None
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(
        self,
        s0: float = 0.0,
        lateral_offset: float = 0.0,
        heading_offset: float = 0.0,
        initial_speed: float | None = None,
    ) -> VehicleState:
        """Put the car on the track and clear time, metrics, history and the command.

        Args:
            s0: arc length of the car centre (m).
            lateral_offset: car centre offset from the centreline (m, positive left).
            heading_offset: yaw relative to the track heading (rad).
            initial_speed: speed (m/s); default the constructor's ``initial_speed``.

        Returns:
            The new state; the command is (0 rad, initial speed).
        """
        x, y, h, _ = self.track.point_at(s0)
        yaw = h + heading_offset
        half_l = 0.5 * self.vehicle_params.wheelbase_m
        cx = x - math.sin(h) * lateral_offset
        cy = y + math.cos(h) * lateral_offset
        v0 = self.initial_speed if initial_speed is None else float(initial_speed)
        self.state = VehicleState(
            x=cx - half_l * math.cos(yaw), y=cy - half_l * math.sin(yaw), yaw=yaw, speed=v0
        )
        self.time = 0.0
        self._carry = 0.0
        self.command: tuple[float, float] = (0.0, v0)
        self._s_hint: float | None = None
        self._progress = 0.0
        self._departures = 0
        self._was_out = False
        self._history = _History()
        self.frenet = self._project()
        self._s_hint = self.frenet.s
        self._s_start = self.frenet.s
        self._update_lane()
        self._record()
        return self.state

    def intervene(self) -> None:
        """A safety driver's intervention: put the car centre back on the centreline at its
        current arc length, heading along the track, steering straight, same speed.

        Unlike :meth:`reset`, time, progress, the departure count and the command are kept; the
        car is no longer out of the lane afterwards.
        """
        s = self.frenet.s
        x, y, h, _ = self.track.point_at(s)
        half_l = 0.5 * self.vehicle_params.wheelbase_m
        self.state = VehicleState(
            x=x - half_l * math.cos(h),
            y=y - half_l * math.sin(h),
            yaw=h,
            speed=self.state.speed,
            steering=0.0,
        )
        self.frenet = self._project()
        self._s_hint = self.frenet.s
        self._was_out = False

    def set_command(self, steering_angle: float, speed: float) -> bool:
        """Hold a new command (front-wheel angle rad, speed m/s) until the next one.

        Returns:
            False, and keeps the previous command, if either value is not finite.
        """
        if not (math.isfinite(steering_angle) and math.isfinite(speed)):
            return False
        self.command = (float(steering_angle), float(speed))
        return True

    def step(self, dt: float) -> VehicleState:
        """Advance simulation time by ``dt`` seconds in whole physics steps.

        The remainder below one physics step carries over to the next call, so many small or
        irregular ``dt`` add up to the same trajectory as one large one.

        Raises:
            ValueError: ``dt`` negative or not finite.
        """
        if not (math.isfinite(dt) and dt >= 0.0):
            raise ValueError(f"LaneKeepingSim.step: dt={dt}; expected finite >= 0 s")
        self._carry += dt
        n = int((self._carry + 1e-9) / self.physics_dt)
        self._carry = max(0.0, self._carry - n * self.physics_dt)
        for _ in range(n):
            self.physics_step()
        return self.state

    def physics_step(self) -> None:
        """One fixed physics step under the held command."""
        steer, speed = self.command
        self.state, self.last_limits = step_vehicle(
            self.state, steer, speed, self.physics_dt, self.vehicle_params
        )
        self.time += self.physics_dt
        prev_s = self.frenet.s
        self.frenet = self._project()
        ds = self.frenet.s - prev_s
        L = self.track.length
        ds = (ds + 0.5 * L) % L - 0.5 * L
        self._progress += ds
        self._s_hint = self.frenet.s
        self._update_lane()
        self._record()

    def _project(self) -> Frenet:
        cx, cy = self.state.centre(self.vehicle_params)
        return self.track.project(cx, cy, self.state.yaw, self._s_hint)

    def _update_lane(self) -> None:
        out = abs(self.frenet.d) > self.limit_half_width
        if out and not self._was_out:
            self._departures += 1
        self._was_out = out

    def _record(self) -> None:
        if not self.record_history:
            return
        st = self.state
        self._history.rows.append(
            (
                self.time,
                st.x,
                st.y,
                st.yaw,
                st.speed,
                st.steering,
                self.frenet.d,
                self.frenet.s,
                self._progress,
            )
        )

    @property
    def metrics(self) -> LaneMetrics:
        """Lane metrics now."""
        return LaneMetrics(
            lateral_error=self.frenet.d,
            heading_error=self.frenet.heading_error,
            s=self.frenet.s,
            progress=self._progress,
            departed=self._was_out,
            departures=self._departures,
        )

    def history(self) -> NDArray[np.float64]:
        """Recorded rows, shape ``(K, len(HISTORY_COLUMNS))``; see :data:`HISTORY_COLUMNS`."""
        if not self._history.rows:
            return np.zeros((0, len(HISTORY_COLUMNS)))
        return np.asarray(self._history.rows, dtype=np.float64)

    def clear_history(self) -> None:
        """Drop recorded rows (e.g. after copying them to a log)."""
        self._history.rows.clear()

    # -- expert --------------------------------------------------------------------------------

    def expert_command(
        self,
        lookahead_m: float = 6.0,
        speed: float = 6.0,
        max_lateral_accel: float | None = None,
        target_offset_m: float = 0.0,
    ) -> tuple[float, float]:
        """Pure-pursuit command on the true pose (Coulter 1992).

        The goal point is the centreline point ``lookahead_m`` ahead (along the track) of the
        rear axle's projection; with ``alpha`` its bearing from the car and ``l`` its distance,
        ``delta = atan(2 L sin(alpha) / l)``, clipped to the steering limit.

        Args:
            lookahead_m: lookahead along the track (m, > 0).
            speed: cruise speed (m/s).
            max_lateral_accel: if given (m/s^2), slow down so that ``v^2 |kappa| <=`` it over the
                next ``2 * lookahead_m``.
            target_offset_m: follow a line this far left of the centreline (m; 0 = the centre).
                Used to inject lateral-offset perturbations into demonstrations.

        Returns:
            ``(steering_angle rad, speed m/s)``.
        """
        st = self.state
        L = self.vehicle_params.wheelbase_m
        s_rear = self.frenet.s - 0.5 * L
        gx, gy, gh, _ = self.track.point_at(s_rear + lookahead_m)
        if target_offset_m:
            gx -= math.sin(gh) * target_offset_m
            gy += math.cos(gh) * target_offset_m
        dx, dy = gx - st.x, gy - st.y
        alpha = wrap_angle(math.atan2(dy, dx) - st.yaw)
        dist = max(1e-3, math.hypot(dx, dy))
        delta = math.atan2(2.0 * L * math.sin(alpha), dist)
        lim = self.vehicle_params.max_steer_rad
        delta = min(lim, max(-lim, delta))
        v = speed
        if max_lateral_accel is not None:
            n = int(2.0 * lookahead_m / self.track.spacing) + 1
            idx = (self.frenet.index + np.arange(n)) % self.track.n
            k = float(np.max(np.abs(self.track.curvature[idx])))
            if k > 1e-6:
                v = min(v, math.sqrt(max_lateral_accel / k))
        return delta, v

    # -- rendering -----------------------------------------------------------------------------

    def sync_scene(self) -> None:
        """Write the car pose into the mocap body and run ``mj_forward``."""
        st = self.state
        self.data.mocap_pos[self._mocap] = (st.x, st.y, 0.0)
        self.data.mocap_quat[self._mocap] = (
            math.cos(0.5 * st.yaw),
            0.0,
            0.0,
            math.sin(0.5 * st.yaw),
        )
        self._mj.mj_forward(self.model, self.data)

    def render(self, camera: str = CAMERA_NAME) -> NDArray[np.uint8]:
        """The camera image now.

        Args:
            camera: ``"front"`` (car camera; the car body is hidden) or ``"chase"`` (behind the car,
                body shown).

        Returns:
            RGB image, shape ``(image_height, image_width, 3)``, dtype uint8 (a new array).

        Raises:
            RuntimeError: constructed with ``render_enabled=False`` or already closed.
        """
        if self._renderer is None:
            raise RuntimeError("LaneKeepingSim.render: renderer disabled or closed")
        self.sync_scene()
        self._scene_option.geomgroup[3] = 0 if camera == CAMERA_NAME else 1
        self._renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        return np.array(self._renderer.render(), dtype=np.uint8, copy=True)

    def close(self) -> None:
        """Free the renderer (idempotent)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> LaneKeepingSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
