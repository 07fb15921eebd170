"""The airframe and its on-board velocity controller.

Airframe: a Crazyflie 2.x from the ``drone-models`` package (Rath, Schuck et al., TU Darmstadt /
learning-systems lab; PyPI ``drone-models==0.1.0``). Only its data files are read: the MJCF
(meshes, motor sites, actuators) and ``data/params.toml`` (identified mass, inertia, arm,
thrust-to-torque ratio, motor thrust limits and the linear drag matrix of its
``so_rpy_rotor_drag`` model). The package's Python modules are never imported: importing them sets
``SCIPY_ARRAY_API`` (and refuses to load after scipy) and pulls CasADi, neither of which the
simulator needs.

Default airframe ``cf2x_L250`` (Crazyflie 2.x with L250 propellers, 31.9 g): the lightest of the
four identified airframes, with a thrust-to-weight ratio of 1.5, which leaves authority above the
1.10 that the 25 deg tilt limit needs. Mass and inertia come from ``params.toml`` (identified, with
battery), not from the MJCF's ``inertial`` (27 g, CAD).

Controller (:class:`VelocityController`), the cascade a PX4 offboard or Crazyflie firmware runs:

1. velocity loop (``control_rate_hz``, 100 Hz as the Crazyflie's position/velocity loop): body
   velocity setpoint (REP 103: x forward, y left, z up, yaw rate about z) rotated by the current
   yaw into the world frame; PI on the velocity error plus gravity and drag feed-forward gives the
   desired force ``f`` (N); its horizontal part is limited to ``max_tilt_rad``; the desired
   attitude has body z along ``f`` and the integrated yaw setpoint.
2. attitude loop (every physics step, 500 Hz as the Crazyflie's): geometric SO(3) controller
   (Lee, Leok, McClamroch 2010, eq. 11-12): ``tau = J (-kR e_R - kW e_W) + w x J w``, collective
   thrust ``T = f . b3``.
3. mixer: ``[T, tau_x, tau_y, tau_z] -> 4 motor thrusts`` (the inverse of the allocation matrix
   built from ``mixing_matrix``, arm ``L`` and ``thrust2torque``), clipped to the identified
   ``[thrust_min, thrust_max]`` per motor.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ltc_controller.extras import require

__all__ = [
    "AIRFRAMES",
    "DEFAULT_AIRFRAME",
    "GRAVITY",
    "ControllerGains",
    "QuadrotorParams",
    "VelocityController",
    "drone_models_dir",
    "load_quadrotor",
]

#: Airframes of ``drone-models`` 0.1.0 with identified parameters (its ``drones.available_drones``).
AIRFRAMES = ("cf2x_L250", "cf2x_P250", "cf2x_T350", "cf21B_500")
DEFAULT_AIRFRAME = "cf2x_L250"
#: m/s^2, as in the airframe's ``gravity_vec``.
GRAVITY = 9.81


def drone_models_dir() -> Path:
    """The installed ``drone_models`` package folder, found without importing it.

    Raises:
        MissingExtra: ``drone-models`` (the ``[sim]`` extra) is not installed.
        RuntimeError: Python 3.10 (``drone-models`` and its scipy need 3.11; setup.cfg installs
            it only there).
    """
    if sys.version_info < (3, 11):
        raise RuntimeError("the drone simulator needs Python >= 3.11 (drone-models, scipy)")
    require("the drone simulator", "sim")
    spec = importlib.util.find_spec("drone_models")
    assert spec is not None and spec.submodule_search_locations  # require() checked
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class QuadrotorParams:
    """Identified parameters of one airframe (SI units), from ``drone_models/data/params.toml``.

    Attributes:
        name: airframe key (one of :data:`AIRFRAMES`).
        mass_kg: total mass.
        inertia: diagonal of the inertia tensor (kg m^2), body x, y, z.
        arm_m: motor offset from the centre along body x and y (the X layout's ``L``).
        thrust2torque: rotor drag torque per thrust (m).
        thrust_min_n, thrust_max_n: per-motor thrust range while armed (N).
        drag: diagonal of the body-frame linear drag matrix (N per m/s, negative).
        mixing: 3 x 4 sign matrix of roll, pitch, yaw torque per motor (motors 0..3).
        mjcf_path: the airframe's MJCF file.
    """

    name: str
    mass_kg: float
    inertia: tuple[float, float, float]
    arm_m: float
    thrust2torque: float
    thrust_min_n: float
    thrust_max_n: float
    drag: tuple[float, float, float]
    mixing: tuple[tuple[float, float, float, float], ...]
    mjcf_path: Path

    @property
    def hover_thrust_n(self) -> float:
        """Collective thrust that holds the airframe (N)."""
        return self.mass_kg * GRAVITY

    @property
    def thrust_to_weight(self) -> float:
        """Maximum collective thrust over weight."""
        return 4.0 * self.thrust_max_n / self.hover_thrust_n


def load_quadrotor(name: str = DEFAULT_AIRFRAME) -> QuadrotorParams:
    """Read an airframe's identified parameters and locate its MJCF.

    Raises:
        ValueError: ``name`` not in :data:`AIRFRAMES`.
        MissingExtra: ``drone-models`` is not installed.
        OSError, KeyError: the package's data files are missing or changed.
    """
    if name not in AIRFRAMES:
        raise ValueError(f"unknown airframe {name!r}; known: {', '.join(AIRFRAMES)}")
    root = drone_models_dir() / "data"
    import tomllib  # Python >= 3.11, checked by drone_models_dir()

    with open(root / "params.toml", "rb") as f:
        p = tomllib.load(f)[name]
    J = p["J"]
    D = p["drag_matrix"]
    mixing = tuple(tuple(float(v) for v in row) for row in p["mixing_matrix"])
    return QuadrotorParams(
        name=name,
        mass_kg=float(p["mass"]),
        inertia=(float(J[0][0]), float(J[1][1]), float(J[2][2])),
        arm_m=float(p["L"]),
        thrust2torque=float(p["thrust2torque"]),
        thrust_min_n=float(p["thrust_min"]),
        thrust_max_n=float(p["thrust_max"]),
        drag=(float(D[0][0]), float(D[1][1]), float(D[2][2])),
        mixing=mixing,  # type: ignore[arg-type]
        mjcf_path=root / f"{name}.xml",
    )


@dataclass(frozen=True)
class ControllerGains:
    """Gains and limits of :class:`VelocityController` (SI units).

    Attributes:
        kv_xy, kv_z: velocity-error gains (1/s): a first-order response with time constant
            ``1/kv`` while the tilt limit is not active.
        ki_xy, ki_z: integral gains (1/s^2); the integral is clamped to ``i_limit`` (m/s^2) and
            only integrates while the velocity error is below ``i_band`` (m/s).
        kR_xy, kW_xy: roll/pitch attitude and rate gains (1/s^2, 1/s): ``wn = 20 rad/s``,
            damping 0.8.
        kR_z, kW_z: yaw gains (``wn = 8 rad/s``).
        max_tilt_rad: tilt limit of the desired attitude (25 deg).
        max_speed_xy_mps, max_speed_z_mps, max_yaw_rate_rps: setpoint limits (clipped).
        land_speed_mps: descent rate of ``land``.
    """

    kv_xy: float = 3.0
    kv_z: float = 4.0
    ki_xy: float = 1.0
    ki_z: float = 2.0
    i_limit: float = 2.0
    i_band: float = 0.1
    kR_xy: float = 400.0
    kW_xy: float = 32.0
    kR_z: float = 64.0
    kW_z: float = 12.8
    max_tilt_rad: float = math.radians(25.0)
    max_speed_xy_mps: float = 2.0
    max_speed_z_mps: float = 1.0
    max_yaw_rate_rps: float = 1.5
    land_speed_mps: float = 0.3


def _clip(v: float, lim: float) -> float:
    return lim if v > lim else (-lim if v < -lim else v)


class VelocityController:
    """Body-velocity setpoint -> four motor thrusts (the cascade of the module docstring).

    Pure Python floats: at 500 Hz on one airframe, scalar arithmetic beats NumPy's per-call cost.
    Call :meth:`velocity_loop` at ``control_rate_hz`` and :meth:`attitude_loop` every physics step.

    Args:
        params: the airframe.
        gains: gains and limits.
    """

    def __init__(self, params: QuadrotorParams, gains: ControllerGains | None = None) -> None:
        self.p = params
        self.g = gains if gains is not None else ControllerGains()
        # Allocation rows (T, tau_x, tau_y, tau_z) are orthogonal sign patterns: the inverse is
        # their transpose scaled per row.
        L, k = params.arm_m, params.thrust2torque
        roll, pitch, yaw = params.mixing
        self._inv = [
            (0.25, 0.25 * roll[i] / L, 0.25 * pitch[i] / L, 0.25 * yaw[i] / k) for i in range(4)
        ]
        self.reset(0.0)

    def reset(self, yaw: float) -> None:
        """Hover at heading ``yaw`` (rad): zero integrators, desired force = weight."""
        self.yaw_sp = yaw
        self.integ = [0.0, 0.0, 0.0]
        self.force = [0.0, 0.0, self.p.hover_thrust_n]
        c, s = math.cos(yaw), math.sin(yaw)
        self.Rd = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)  # row-major
        self.yaw_rate_sp = 0.0
        self.tilt_limited = False

    def velocity_loop(
        self,
        setpoint: tuple[float, float, float, float],
        R: tuple[float, ...],
        vel: tuple[float, float, float],
        dt: float,
    ) -> None:
        """Update the desired force and attitude.

        Args:
            setpoint: ``(vx, vy, vz, yaw_rate)`` in the body frame (m/s, rad/s), already finite
                and clipped (:meth:`clip_setpoint`).
            R: body-to-world rotation, row-major 9-tuple.
            vel: world-frame linear velocity (m/s).
            dt: time since the last call (s).
        """
        g = self.g
        m = self.p.mass_kg
        vx_b, vy_b, vz_sp, r_sp = setpoint
        yaw = math.atan2(R[3], R[0])
        c, s = math.cos(yaw), math.sin(yaw)
        sp = (c * vx_b - s * vy_b, s * vx_b + c * vy_b, vz_sp)
        kv = (g.kv_xy, g.kv_xy, g.kv_z)
        ki = (g.ki_xy, g.ki_xy, g.ki_z)
        # Drag feed-forward: the force the identified drag exerts at the setpoint velocity,
        # R diag(D) R^T v_sp, negated.
        d0, d1, d2 = self.p.drag
        bx = R[0] * sp[0] + R[3] * sp[1] + R[6] * sp[2]
        by = R[1] * sp[0] + R[4] * sp[1] + R[7] * sp[2]
        bz = R[2] * sp[0] + R[5] * sp[1] + R[8] * sp[2]
        drag = (
            R[0] * d0 * bx + R[1] * d1 * by + R[2] * d2 * bz,
            R[3] * d0 * bx + R[4] * d1 * by + R[5] * d2 * bz,
            R[6] * d0 * bx + R[7] * d1 * by + R[8] * d2 * bz,
        )
        f = [0.0, 0.0, 0.0]
        for i in range(3):
            e = sp[i] - vel[i]
            # Anti-windup: integrate near the setpoint only (the integral trims steady-state
            # errors; during a step the proportional term and the feed-forwards do the work).
            if abs(e) < g.i_band:
                self.integ[i] = _clip(self.integ[i] + ki[i] * e * dt, g.i_limit)
            f[i] = m * (kv[i] * e + self.integ[i]) - drag[i]
        f[2] += m * GRAVITY
        f[2] = max(f[2], 0.3 * m * GRAVITY)
        h = math.hypot(f[0], f[1])
        hmax = f[2] * math.tan(g.max_tilt_rad)
        self.tilt_limited = h > hmax
        if self.tilt_limited:
            f[0] *= hmax / h
            f[1] *= hmax / h
        self.force = f
        # Desired attitude: b3 along f, heading yaw_sp (kept within 0.5 rad of the actual yaw so
        # a blocked yaw does not wind up).
        self.yaw_rate_sp = r_sp
        ys = self.yaw_sp + r_sp * dt
        dy = math.remainder(ys - yaw, math.tau)
        self.yaw_sp = yaw + _clip(dy, 0.5)
        n = math.sqrt(f[0] * f[0] + f[1] * f[1] + f[2] * f[2])
        b3 = (f[0] / n, f[1] / n, f[2] / n)
        c1 = (math.cos(self.yaw_sp), math.sin(self.yaw_sp), 0.0)
        b2 = (
            b3[1] * c1[2] - b3[2] * c1[1],
            b3[2] * c1[0] - b3[0] * c1[2],
            b3[0] * c1[1] - b3[1] * c1[0],
        )
        n2 = math.sqrt(b2[0] * b2[0] + b2[1] * b2[1] + b2[2] * b2[2])
        b2 = (b2[0] / n2, b2[1] / n2, b2[2] / n2)
        b1 = (
            b2[1] * b3[2] - b2[2] * b3[1],
            b2[2] * b3[0] - b2[0] * b3[2],
            b2[0] * b3[1] - b2[1] * b3[0],
        )
        self.Rd = (b1[0], b2[0], b3[0], b1[1], b2[1], b3[1], b1[2], b2[2], b3[2])

    def attitude_loop(
        self, R: tuple[float, ...], omega: tuple[float, float, float], out: list[float]
    ) -> None:
        """Motor thrusts for the current attitude.

        Args:
            R: body-to-world rotation, row-major 9-tuple.
            omega: body angular velocity (rad/s).
            out: 4 motor thrusts (N) written in place, clipped to the armed range.
        """
        g, p = self.g, self.p
        Rd = self.Rd
        # M = Rd^T R (row-major); e_R = vee(M - M^T) / 2.
        m01 = Rd[0] * R[1] + Rd[3] * R[4] + Rd[6] * R[7]
        m02 = Rd[0] * R[2] + Rd[3] * R[5] + Rd[6] * R[8]
        m10 = Rd[1] * R[0] + Rd[4] * R[3] + Rd[7] * R[6]
        m12 = Rd[1] * R[2] + Rd[4] * R[5] + Rd[7] * R[8]
        m20 = Rd[2] * R[0] + Rd[5] * R[3] + Rd[8] * R[6]
        m21 = Rd[2] * R[1] + Rd[5] * R[4] + Rd[8] * R[7]
        ex = 0.5 * (m21 - m12)
        ey = 0.5 * (m02 - m20)
        ez = 0.5 * (m10 - m01)
        wx, wy, wz = omega
        Jx, Jy, Jz = p.inertia
        tx = Jx * (-g.kR_xy * ex - g.kW_xy * wx) + (Jz - Jy) * wy * wz
        ty = Jy * (-g.kR_xy * ey - g.kW_xy * wy) + (Jx - Jz) * wz * wx
        tz = Jz * (-g.kR_z * ez - g.kW_z * (wz - self.yaw_rate_sp)) + (Jy - Jx) * wx * wy
        f = self.force
        T = f[0] * R[2] + f[1] * R[5] + f[2] * R[8]
        lo, hi = p.thrust_min_n, p.thrust_max_n
        for i, (a, b, c, d) in enumerate(self._inv):
            v = a * T + b * tx + c * ty + d * tz
            out[i] = lo if v < lo else (hi if v > hi else v)

    def clip_setpoint(
        self, vx: float, vy: float, vz: float, yaw_rate: float
    ) -> tuple[float, float, float, float]:
        """Limit a body-frame setpoint: horizontal speed (keeping direction), climb/descent rate,
        yaw rate (the limits of :class:`ControllerGains`)."""
        g = self.g
        h = math.hypot(vx, vy)
        if h > g.max_speed_xy_mps:
            vx *= g.max_speed_xy_mps / h
            vy *= g.max_speed_xy_mps / h
        return vx, vy, _clip(vz, g.max_speed_z_mps), _clip(yaw_rate, g.max_yaw_rate_rps)
