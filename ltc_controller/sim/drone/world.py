"""Seeded drone worlds: a forest (or urban) field, a target object, and their MJCF.

Frames: world ENU (REP 103/105: x east, y north, z up), metres. The drone starts at the origin,
``start_altitude_m`` up, heading +x. The target (a red chair, front along its local +x) stands on
the ground ``target_range_m`` away within ``target_bearing_rad`` of +x, so it is in the forward
camera's view at the start (as the fly-to-target task of Chahine et al. 2023).

Obstacles are vertical cylinders (tree trunks; their crowns start 1.9 m or more above the ground:
they collide, but are clear of a flight at 1 m) or yaw-rotated boxes (buildings, distractors, the
occluding bush); their footprints (:meth:`DroneWorld.clearance`) are what the expert and the
reachability check see. Placement is
rejection sampling with a minimum free gap between footprints; the start, the target and the line
of sight between them are kept clear, except for the occluder of the ``target_occluded`` shift.
:func:`generate_world` retries with derived seeds until the target is reachable on a grid
(:func:`reachable`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CAMERA_NAME",
    "DRONE_BODY",
    "DroneWorld",
    "DroneWorldStyle",
    "Obstacle",
    "WorldGenerationError",
    "WorldParams",
    "build_mjcf",
    "generate_world",
    "reachable",
]

#: Name of the drone body (free joint ``drone_root``) and of its forward camera.
DRONE_BODY = "drone"
CAMERA_NAME = "front"
#: Geom group of the airframe's visual meshes (hidden from its own camera).
DRONE_GEOM_GROUP = 2

RGB = tuple[float, float, float]


class WorldGenerationError(RuntimeError):
    """No reachable world for a seed within the retry budget."""


@dataclass(frozen=True)
class WorldParams:
    """Distribution of worlds (SI units, radians).

    Attributes:
        scene: ``"forest"`` (cylindrical trunks) or ``"urban"`` (box buildings).
        target_range_m: range of the start-to-target distance.
        target_bearing_rad: maximum |bearing| of the target from the start heading.
        target_yaw_rad: range of |target yaw offset| from facing the start (0 = its front, with
            the white panel, faces the drone); the sign is random.
        density_per_100m2: obstacles per 100 m^2 of field.
        trunk_radius_m, trunk_height_m: forest trunk size ranges.
        building_half_m, building_height_m: urban footprint half-size and height ranges.
        min_gap_m: minimum free distance between obstacle footprints.
        clear_radius_m: no obstacle footprint within this distance of the start or the target.
        corridor_half_width_m: the line of sight start -> target is kept clear this wide.
        field_half_width_m: the field spans ``|y| <= this`` and ``x`` from -4 m to 8 m past the
            target.
        occluder: put a bush between start and target that hides about half of the target.
        n_distractors: coloured objects (boxes, balls, cones) near the line of sight.
        success_radius_m: horizontal distance to the target that counts as reached.
        time_limit_s: episode time limit.
        start_altitude_m: hover altitude at the start (and the expert's flight altitude).
    """

    scene: str = "forest"
    target_range_m: tuple[float, float] = (6.0, 10.0)
    target_bearing_rad: float = 0.3
    target_yaw_rad: tuple[float, float] = (0.0, 0.35)
    density_per_100m2: float = 7.0
    trunk_radius_m: tuple[float, float] = (0.1, 0.25)
    trunk_height_m: tuple[float, float] = (4.0, 7.0)
    building_half_m: tuple[float, float] = (0.5, 1.4)
    building_height_m: tuple[float, float] = (3.0, 9.0)
    min_gap_m: float = 1.0
    clear_radius_m: float = 1.5
    corridor_half_width_m: float = 0.5
    field_half_width_m: float = 10.0
    occluder: bool = False
    n_distractors: int = 0
    success_radius_m: float = 1.0
    time_limit_s: float = 25.0
    start_altitude_m: float = 1.0

    def __post_init__(self) -> None:
        if self.scene not in ("forest", "urban"):
            raise ValueError(f"WorldParams.scene={self.scene!r}; expected 'forest' or 'urban'")
        lo, hi = self.target_range_m
        if not (2.0 * self.clear_radius_m < lo <= hi):
            raise ValueError(f"WorldParams.target_range_m={self.target_range_m}")
        if self.time_limit_s <= 0.0 or self.success_radius_m <= 0.0:
            raise ValueError("WorldParams: time_limit_s and success_radius_m must be > 0")


@dataclass(frozen=True)
class Obstacle:
    """A static obstacle standing on the ground.

    Attributes:
        kind: ``"trunk"``, ``"building"``, ``"distractor"`` or ``"occluder"``.
        shape: ``"cylinder"`` (``size[0]`` = radius), ``"box"`` (``size[:2]`` = half extents in
            its own frame) or ``"sphere"`` (``size[0]`` = radius, resting on the ground).
        x, y: centre (m). yaw: rotation about z (rad; boxes).
        size: ``(a, b, half_height)`` (m).
        rgb: colour.
    """

    kind: str
    shape: str
    x: float
    y: float
    yaw: float
    size: tuple[float, float, float]
    rgb: RGB = (0.4, 0.3, 0.2)

    @property
    def footprint_radius(self) -> float:
        """Radius of a circle that holds the footprint (m)."""
        if self.shape == "box":
            return math.hypot(self.size[0], self.size[1])
        return self.size[0]


#: The chair target: footprint circle radius (m), and the height of its seat top (m).
TARGET_RADIUS_M = 0.33
TARGET_HEIGHT_M = 1.05


@dataclass(frozen=True)
class DroneWorld:
    """One generated world.

    Attributes:
        seed: the seed asked for. attempt: how many derived seeds were rejected before it.
        params: the distribution it was drawn from.
        obstacles: static obstacles (the target not included).
        target: ``(x, y, yaw)`` of the chair (m, rad).
        start: ``(x, y, z, yaw)`` of the drone at reset.
    """

    seed: int
    attempt: int
    params: WorldParams
    obstacles: tuple[Obstacle, ...]
    target: tuple[float, float, float]
    start: tuple[float, float, float, float]
    _arrays: dict[str, NDArray[np.float64]] = field(default_factory=dict, repr=False, compare=False)

    def footprints(self, include_target: bool = True) -> dict[str, NDArray[np.float64]]:
        """Footprint arrays: ``cx, cy, cos, sin, a, b`` (length M) and ``is_box`` (1.0 / 0.0)."""
        key = "t" if include_target else "n"
        if key + "cx" not in self._arrays:
            obs = list(self.obstacles)
            if include_target:
                tx, ty, tyaw = self.target
                obs.append(Obstacle("target", "cylinder", tx, ty, tyaw, (TARGET_RADIUS_M, 0, 0)))
            a = self._arrays
            a[key + "cx"] = np.array([o.x for o in obs], dtype=np.float64)
            a[key + "cy"] = np.array([o.y for o in obs], dtype=np.float64)
            a[key + "cos"] = np.array([math.cos(o.yaw) for o in obs], dtype=np.float64)
            a[key + "sin"] = np.array([math.sin(o.yaw) for o in obs], dtype=np.float64)
            a[key + "a"] = np.array([o.size[0] for o in obs], dtype=np.float64)
            a[key + "b"] = np.array([o.size[1] for o in obs], dtype=np.float64)
            a[key + "is_box"] = np.array([o.shape == "box" for o in obs], dtype=np.float64)
        return {k[1:]: v for k, v in self._arrays.items() if k[0] == key}

    def clearance(
        self,
        px: NDArray[np.float64] | float,
        py: NDArray[np.float64] | float,
        *,
        target: bool = True,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Horizontal distance from points to every footprint, and the unit direction away.

        Args:
            px, py: points (m), scalars or arrays of shape ``(P,)``.
            target: include the target's footprint.

        Returns:
            ``(d, nx, ny)``, each ``(P, M)`` (``(1, M)`` for scalars): signed distance to the
            footprint edge (m, negative inside) and the unit vector from the footprint towards
            the point.
        """
        f = self.footprints(target)
        x = np.atleast_1d(np.asarray(px, dtype=np.float64))[:, None]
        y = np.atleast_1d(np.asarray(py, dtype=np.float64))[:, None]
        dx, dy = x - f["cx"], y - f["cy"]
        # Box: point in the box frame, distance to the rectangle, gradient rotated back.
        qx = f["cos"] * dx + f["sin"] * dy
        qy = -f["sin"] * dx + f["cos"] * dy
        ox = np.abs(qx) - f["a"]
        oy = np.abs(qy) - f["b"]
        outx, outy = np.maximum(ox, 0.0), np.maximum(oy, 0.0)
        out_n = np.hypot(outx, outy)
        inside = np.minimum(np.maximum(ox, oy), 0.0)
        d_box = out_n + inside
        safe = np.where(out_n > 1e-9, out_n, 1.0)
        gx = np.where(out_n > 1e-9, np.sign(qx) * outx / safe, np.where(ox > oy, np.sign(qx), 0.0))
        gy = np.where(out_n > 1e-9, np.sign(qy) * outy / safe, np.where(ox > oy, 0.0, np.sign(qy)))
        bx = f["cos"] * gx - f["sin"] * gy
        by = f["sin"] * gx + f["cos"] * gy
        # Circle.
        r = np.hypot(dx, dy)
        rs = np.where(r > 1e-9, r, 1.0)
        d_c = r - f["a"]
        cxn, cyn = np.where(r > 1e-9, dx / rs, 1.0), np.where(r > 1e-9, dy / rs, 0.0)
        box = f["is_box"] > 0.5
        return np.where(box, d_box, d_c), np.where(box, bx, cxn), np.where(box, by, cyn)

    def distance_to_target(self, x: float, y: float) -> float:
        """Horizontal distance to the target's centre (m)."""
        return math.hypot(x - self.target[0], y - self.target[1])


def _seg_dist(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    vx, vy = bx - ax, by - ay
    t = ((px - ax) * vx + (py - ay) * vy) / max(1e-12, vx * vx + vy * vy)
    t = min(1.0, max(0.0, t))
    return math.hypot(px - (ax + t * vx), py - (ay + t * vy))


_TRUNK_RGB: RGB = (0.35, 0.25, 0.16)
_BUILDING_RGBS: tuple[RGB, ...] = ((0.62, 0.60, 0.57), (0.72, 0.66, 0.55), (0.50, 0.52, 0.56))
_DISTRACTOR_RGBS: tuple[RGB, ...] = (
    (0.15, 0.35, 0.85),
    (0.95, 0.85, 0.10),
    (0.80, 0.20, 0.75),
    (0.90, 0.15, 0.10),
)

#: Grid resolution (m) and the clearance a cell needs (m) in :func:`reachable`.
GRID_RES_M = 0.2
DRONE_CLEARANCE_M = 0.25


def reachable(world: DroneWorld) -> bool:
    """Whether a path exists from the start to within ``success_radius_m`` of the target on a
    ``GRID_RES_M`` grid whose free cells are at least ``DRONE_CLEARANCE_M`` from every footprint
    (the target's included), 8-connected, inside the field."""
    p = world.params
    tx, ty, _ = world.target
    x0, x1 = -4.0, max(tx, 0.0) + 8.0
    hw = p.field_half_width_m
    xs = np.arange(x0, x1 + 1e-9, GRID_RES_M)
    ys = np.arange(-hw, hw + 1e-9, GRID_RES_M)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    d, _, _ = world.clearance(gx.ravel(), gy.ravel())
    free = (d.min(axis=1) >= DRONE_CLEARANCE_M).reshape(gx.shape)
    goal = (np.hypot(gx - tx, gy - ty) <= p.success_radius_m) & free
    si = int(round((world.start[0] - x0) / GRID_RES_M))
    sj = int(round((world.start[1] + hw) / GRID_RES_M))
    if not free[si, sj]:
        return False
    seen = np.zeros_like(free)
    seen[si, sj] = True
    q = deque([(si, sj)])
    nx, ny = free.shape
    while q:
        i, j = q.popleft()
        if goal[i, j]:
            return True
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                a, b = i + di, j + dj
                if 0 <= a < nx and 0 <= b < ny and free[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    q.append((a, b))
    return False


def _draw(seed: int, attempt: int, p: WorldParams) -> DroneWorld:
    rng = np.random.default_rng([seed, attempt])
    rng_t = float(rng.uniform(*p.target_range_m))
    bearing = float(rng.uniform(-p.target_bearing_rad, p.target_bearing_rad))
    tx, ty = rng_t * math.cos(bearing), rng_t * math.sin(bearing)
    sign = float(rng.choice((-1.0, 1.0)))
    tyaw = math.atan2(-ty, -tx) + sign * float(rng.uniform(*p.target_yaw_rad))
    start = (0.0, 0.0, p.start_altitude_m, 0.0)
    placed: list[Obstacle] = []

    def free_at(x: float, y: float, r: float, corridor: bool = True) -> bool:
        if math.hypot(x, y) < p.clear_radius_m + r or math.hypot(x - tx, y - ty) < (
            p.clear_radius_m + r
        ):
            return False
        if corridor and _seg_dist(x, y, 0.0, 0.0, tx, ty) < p.corridor_half_width_m + r:
            return False
        return all(
            math.hypot(x - o.x, y - o.y) >= r + o.footprint_radius + p.min_gap_m for o in placed
        )

    if p.occluder:
        # A bush 2 m in front of the target, its edge on the line of sight: from the start it
        # hides about half of the target.
        ux, uy = -tx / rng_t, -ty / rng_t
        side = float(rng.choice((-1.0, 1.0)))
        ox = tx + 2.0 * ux - side * 0.3 * uy
        oy = ty + 2.0 * uy + side * 0.3 * ux
        placed.append(
            Obstacle(
                "occluder", "box", ox, oy, math.atan2(uy, ux), (0.25, 0.3, 0.65), (0.18, 0.32, 0.14)
            )
        )
    x_lo, x_hi = -4.0, rng_t + 8.0
    hw = p.field_half_width_m
    for k in range(p.n_distractors):
        for _ in range(200):
            along = float(rng.uniform(0.25, 0.85)) * rng_t
            off = float(rng.choice((-1.0, 1.0))) * float(rng.uniform(1.0, 3.0))
            ux, uy = tx / rng_t, ty / rng_t
            x, y = along * ux - off * uy, along * uy + off * ux
            shape = ("box", "sphere", "cylinder")[k % 3]
            size = (0.25, 0.25, 0.25) if shape != "cylinder" else (0.15, 0.0, 0.5)
            if free_at(x, y, max(size[0], size[1]) * 1.5):
                rgb = _DISTRACTOR_RGBS[k % len(_DISTRACTOR_RGBS)]
                yaw = float(rng.uniform(-math.pi, math.pi))
                placed.append(Obstacle("distractor", shape, x, y, yaw, size, rgb))
                break
    area = (x_hi - x_lo) * 2.0 * hw
    n = int(round(p.density_per_100m2 * area / 100.0))
    for _ in range(n):
        for _ in range(30):
            x, y = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(-hw, hw))
            if p.scene == "forest":
                r = float(rng.uniform(*p.trunk_radius_m))
                if free_at(x, y, r):
                    h = float(rng.uniform(*p.trunk_height_m))
                    placed.append(
                        Obstacle("trunk", "cylinder", x, y, 0.0, (r, 0.0, 0.5 * h), _TRUNK_RGB)
                    )
                    break
            else:
                a, b = (float(rng.uniform(*p.building_half_m)) for _ in range(2))
                if free_at(x, y, math.hypot(a, b)):
                    h = float(rng.uniform(*p.building_height_m))
                    yaw = float(rng.uniform(-math.pi, math.pi))
                    rgb = _BUILDING_RGBS[int(rng.integers(len(_BUILDING_RGBS)))]
                    placed.append(Obstacle("building", "box", x, y, yaw, (a, b, 0.5 * h), rgb))
                    break
    return DroneWorld(seed, attempt, p, tuple(placed), (tx, ty, tyaw), start)


def generate_world(
    seed: int, params: WorldParams | None = None, max_attempts: int = 20
) -> DroneWorld:
    """A reachable world for ``seed`` (same seed and params -> same world).

    Raises:
        ValueError: negative seed.
        WorldGenerationError: no reachable world in ``max_attempts`` derived seeds.
    """
    if seed < 0:
        raise ValueError(f"world seed {seed}: expected >= 0")
    p = params if params is not None else WorldParams()
    for attempt in range(max_attempts):
        w = _draw(seed, attempt, p)
        if reachable(w):
            return w
    raise WorldGenerationError(f"no reachable world for seed {seed} in {max_attempts} attempts")


@dataclass(frozen=True)
class DroneWorldStyle:
    """Appearance (the rendering knobs of the shifts).

    Attributes:
        ground_rgb, ground_mark_rgb, ground_random: the two colours and the mark fraction of the
            noisy ground texture.
        trunk_rgb: trunk colour (forest). crown_rgb: leaf colour; ``None`` draws bare trunks.
        building_tint: multiplies building colours (urban).
        sky_top_rgb, sky_bottom_rgb: sky gradient.
        light_diffuse, ambient: sun and headlight intensity (0..1).
        fog_rgb: fog colour; ``None`` = no fog. fog_start_m, fog_end_m: fog ramp (m).
        target_rgb: chair colour. panel_rgb: the panel on the chair's front.
        camera_x_m, camera_pitch_rad, camera_fovy_deg: forward camera mount (pitched down).
    """

    ground_rgb: RGB = (0.24, 0.40, 0.15)
    ground_mark_rgb: RGB = (0.33, 0.30, 0.16)
    ground_random: float = 0.4
    trunk_rgb: RGB = _TRUNK_RGB
    crown_rgb: RGB | None = (0.13, 0.42, 0.12)
    building_tint: float = 1.0
    sky_top_rgb: RGB = (0.35, 0.55, 0.85)
    sky_bottom_rgb: RGB = (0.80, 0.87, 0.95)
    light_diffuse: float = 0.7
    ambient: float = 0.35
    fog_rgb: RGB | None = None
    fog_start_m: float = 2.0
    fog_end_m: float = 14.0
    target_rgb: RGB = (0.85, 0.08, 0.08)
    panel_rgb: RGB = (0.95, 0.95, 0.95)
    camera_x_m: float = 0.03
    camera_pitch_rad: float = math.radians(8.0)
    camera_fovy_deg: float = 50.0


def _rgb(c: tuple[float, ...]) -> str:
    return " ".join(f"{v:.3f}" for v in c)


#: ``statistic extent`` of the scene: MuJoCo scales znear/zfar and fog by it.
_EXTENT = 10.0


def _obstacle_xml(i: int, o: Obstacle, st: DroneWorldStyle) -> str:
    deg = math.degrees(o.yaw)
    a, b, hh = o.size
    rgb = o.rgb
    if o.kind == "trunk":
        rgb = st.trunk_rgb
    elif o.kind == "building":
        rgb = tuple(min(1.0, c * st.building_tint) for c in o.rgb)  # type: ignore[assignment]
    col = 'contype="0" conaffinity="1"'
    if o.shape == "cylinder":
        g = (
            f'    <geom name="obs{i}" type="cylinder" pos="{o.x:.3f} {o.y:.3f} {hh:.3f}" '
            f'size="{a:.3f} {hh:.3f}" rgba="{_rgb(rgb)} 1" {col}/>'
        )
        if o.kind == "trunk" and st.crown_rgb is not None:
            cr = max(0.8, 4.0 * a)
            cz = 2.0 * hh - 0.8 * cr
            g += (
                f'\n    <geom name="crown{i}" type="ellipsoid" pos="{o.x:.3f} {o.y:.3f} {cz:.3f}" '
                f'size="{cr:.3f} {cr:.3f} {1.3 * cr:.3f}" rgba="{_rgb(st.crown_rgb)} 1" {col}/>'
            )
        return g
    if o.shape == "sphere":
        return (
            f'    <geom name="obs{i}" type="sphere" pos="{o.x:.3f} {o.y:.3f} {a:.3f}" '
            f'size="{a:.3f}" rgba="{_rgb(rgb)} 1" {col}/>'
        )
    return (
        f'    <geom name="obs{i}" type="box" pos="{o.x:.3f} {o.y:.3f} {hh:.3f}" '
        f'euler="0 0 {deg:.2f}" size="{a:.3f} {b:.3f} {hh:.3f}" rgba="{_rgb(rgb)} 1" {col}/>'
    )


def _target_xml(world: DroneWorld, st: DroneWorldStyle) -> str:
    tx, ty, tyaw = world.target
    red = f'rgba="{_rgb(st.target_rgb)} 1"'
    leg = 'rgba="0.15 0.15 0.15 1"'
    col = 'contype="0" conaffinity="1"'
    legs = "\n".join(
        f'      <geom name="target_leg{k}" type="cylinder" '
        f'pos="{sx * 0.18:.2f} {sy * 0.18:.2f} 0.22" size="0.02 0.22" {leg} {col}/>'
        for k, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1)))
    )
    deg = math.degrees(tyaw)
    return f"""    <body name="target" pos="{tx:.3f} {ty:.3f} 0" euler="0 0 {deg:.2f}">
      <geom name="target_seat" type="box" pos="0 0 0.47" size="0.23 0.23 0.03" {red} {col}/>
      <geom name="target_back" type="box" pos="-0.2 0 0.77" size="0.03 0.23 0.28" {red} {col}/>
      <geom name="target_panel" type="box" pos="-0.168 0 0.8" size="0.004 0.15 0.15"
            rgba="{_rgb(st.panel_rgb)} 1" contype="0" conaffinity="0"/>
{legs}
    </body>"""


def build_mjcf(
    world: DroneWorld, style: DroneWorldStyle | None, drone_worldbody: str, drone_assets: str
) -> str:
    """MJCF XML of ``world`` with the airframe.

    Args:
        world: the generated world.
        style: appearance (default :class:`DroneWorldStyle`).
        drone_worldbody: the airframe's ``<body>`` element (with its free joint and cameras).
        drone_assets: the airframe's ``<asset>``, ``<default>`` and ``<actuator>`` elements.

    Returns:
        An XML string (angles in degrees, as the airframe's MJCF).
    """
    st = style if style is not None else DroneWorldStyle()
    p = world.params
    tx = world.target[0]
    cx = 0.5 * (tx - 4.0 + tx + 8.0)
    ground = 60.0
    obstacles = "\n".join(_obstacle_xml(i, o, st) for i, o in enumerate(world.obstacles))
    fog = ""
    if st.fog_rgb is not None:
        fog = (
            f'    <map znear="0.003" zfar="8" fogstart="{st.fog_start_m / _EXTENT:.3f}" '
            f'fogend="{st.fog_end_m / _EXTENT:.3f}"/>\n'
            f'    <rgba fog="{_rgb(st.fog_rgb)} 1"/>\n'
        )
    else:
        fog = '    <map znear="0.003" zfar="8"/>\n'
    amb, ld = st.ambient, st.light_diffuse
    sky_top = st.sky_top_rgb if st.fog_rgb is None else st.fog_rgb
    sky_bot = st.sky_bottom_rgb if st.fog_rgb is None else st.fog_rgb
    return f"""<mujoco model="drone_world_{world.seed}_{p.scene}">
  <compiler autolimits="true" inertiafromgeom="false"/>
  <option timestep="0.002" gravity="0 0 -9.81"/>
  <statistic extent="{_EXTENT:.1f}" center="{cx:.2f} 0 1"/>
  <visual>
    <quality shadowsize="0" offsamples="0" numslices="8" numstacks="4"/>
{fog}    <headlight ambient="{amb:.3f} {amb:.3f} {amb:.3f}" diffuse="0.25 0.25 0.25"
               specular="0 0 0"/>
  </visual>
{drone_assets}
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" width="32" height="32"
             rgb1="{_rgb(sky_top)}" rgb2="{_rgb(sky_bot)}"/>
    <texture name="ground" type="2d" builtin="flat" width="128" height="128" mark="random"
             random="{st.ground_random:.3f}" rgb1="{_rgb(st.ground_rgb)}"
             markrgb="{_rgb(st.ground_mark_rgb)}"/>
    <material name="ground" texture="ground" texrepeat="{ground / 3:.1f} {ground / 3:.1f}"
              specular="0" shininess="0" reflectance="0"/>
  </asset>
  <worldbody>
    <light name="sun" directional="true" castshadow="false" pos="0 0 50" dir="0.3 0.2 -1"
           diffuse="{ld:.3f} {ld:.3f} {ld:.3f}" specular="0 0 0"/>
    <geom name="ground" type="plane" pos="{cx:.2f} 0 0" size="{ground:.1f} {ground:.1f} 1"
          material="ground" contype="1" conaffinity="1"/>
{obstacles}
{_target_xml(world, st)}
{drone_worldbody}
  </worldbody>
</mujoco>
"""
