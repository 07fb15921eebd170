"""MJCF (MuJoCo XML) scene for a track: grass, a road mesh, lane markings, sky, and the car.

The road and each marking are single triangle-strip meshes that follow the centreline (a handful of
geoms in all, so rendering cost does not grow with track length). The car is a mocap body (its
pose is written by the simulator, no contact physics); its geoms sit in geom group 3, which the
car's own camera does not draw, so the body never hides the road.

Camera ``front`` looks along the car's +x, mounted ``camera_height_m`` above the ground and
``camera_x_m`` ahead of the rear axle, pitched down by ``camera_pitch_rad``. MuJoCo cameras look
along their local -z with +y up, hence ``xyaxes = (0 -1 0, sin p 0 cos p)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ltc_controller.sim.track import FloatArray, Track
from ltc_controller.sim.vehicle import VehicleParams

#: Geom group of the car body (hidden from the car's own camera).
CAR_GEOM_GROUP = 3
#: Name of the mocap body and of the forward camera.
CAR_BODY = "car"
CAMERA_NAME = "front"

RGBA = tuple[float, float, float, float]


@dataclass(frozen=True)
class WorldStyle:
    """Appearance of the scene (the domain-shift knobs for rendering).

    Attributes:
        grass_rgb, grass_mark_rgb: the two colours of the noisy grass texture.
        road_rgba: asphalt colour. marking_rgba: edge markings. centre_rgba: centre line.
        sky_top_rgb, sky_bottom_rgb: sky gradient.
        shoulder_m: asphalt beyond each edge marking (m).
        marking_width_m: width of each marking (m).
        left_dashed, right_dashed: draw that edge as dashes instead of a solid line.
        centre_line: draw a dashed centre line (the car drives on it: a distractor, not a lane).
        dash_m, gap_m: dash pattern (m).
        light_diffuse: diffuse intensity of the sun (0..1).
        ambient: ambient intensity of the headlight (0..1); with ``light_diffuse`` it sets the
            scene brightness (the lighting knob).
        road_texture_rgb: if set, the asphalt gets a random speckle texture of this second colour
            (a texture shift; ``None`` = plain colour).
        road_texture_random: fraction of speckled texels (0..1).
        grass_random: fraction of texels in ``grass_mark_rgb``.
        camera_height_m, camera_x_m, camera_pitch_rad, camera_fovy_deg: front camera mount.
        camera_y_m: lateral camera offset from the car axis (m, positive left).
        camera_yaw_rad: camera yaw relative to the car (rad, positive left).
    """

    grass_rgb: tuple[float, float, float] = (0.22, 0.42, 0.16)
    grass_mark_rgb: tuple[float, float, float] = (0.30, 0.52, 0.20)
    road_rgba: RGBA = (0.30, 0.30, 0.32, 1.0)
    marking_rgba: RGBA = (0.95, 0.95, 0.95, 1.0)
    centre_rgba: RGBA = (0.95, 0.78, 0.10, 1.0)
    sky_top_rgb: tuple[float, float, float] = (0.35, 0.55, 0.85)
    sky_bottom_rgb: tuple[float, float, float] = (0.80, 0.87, 0.95)
    shoulder_m: float = 0.6
    marking_width_m: float = 0.15
    left_dashed: bool = False
    right_dashed: bool = False
    centre_line: bool = False
    dash_m: float = 3.0
    gap_m: float = 4.5
    light_diffuse: float = 0.7
    ambient: float = 0.35
    road_texture_rgb: tuple[float, float, float] | None = None
    road_texture_random: float = 0.3
    grass_random: float = 0.35
    camera_height_m: float = 1.2
    camera_x_m: float = 1.6
    camera_pitch_rad: float = math.radians(10.0)
    camera_fovy_deg: float = 45.0
    camera_y_m: float = 0.0
    camera_yaw_rad: float = 0.0


def _fmt(a: FloatArray) -> str:
    return " ".join(f"{v:.4f}" for v in np.asarray(a).ravel())


def _ints(a: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in np.asarray(a).ravel())


def _rgb(c: tuple[float, ...]) -> str:
    return " ".join(f"{v:.3f}" for v in c)


def ribbon(
    track: Track,
    d_left: float,
    d_right: float,
    z: float,
    spans: list[tuple[int, int]] | None = None,
    step: int = 4,
    tex_m: float = 0.0,
) -> tuple[FloatArray, np.ndarray, FloatArray]:
    """Flat strip between lateral offsets ``d_right < d_left`` (m, positive left) at height ``z``.

    Args:
        track: the centreline.
        d_left, d_right: lateral offsets of the strip's edges (m).
        z: height (m).
        spans: sample index ranges ``[a, b)`` to cover (indices may exceed N: they wrap); default
            the whole closed loop.
        step: use every ``step``-th centreline sample.
        tex_m: texture tile size (m); texture coordinates are arc length and lateral offset
            divided by it (0: all zero).

    Returns:
        ``(vertices (V, 3) float, faces (F, 3) int, texcoords (V, 2) float)``, faces
        counter-clockwise seen from above.
    """
    n = track.n
    if spans is None:
        spans = [(0, n + 1)]
    verts: list[FloatArray] = []
    faces: list[np.ndarray] = []
    uvs: list[FloatArray] = []
    base = 0
    for a, b in spans:
        idx = np.arange(a, b, step)
        if idx[-1] != b - 1:
            idx = np.append(idx, b - 1)
        s_along = idx * track.spacing
        idx = idx % n
        h = track.heading[idx]
        nx, ny = -np.sin(h), np.cos(h)
        x, y = track.x[idx], track.y[idx]
        left = np.stack([x + d_left * nx, y + d_left * ny, np.full_like(x, z)], axis=1)
        right = np.stack([x + d_right * nx, y + d_right * ny, np.full_like(x, z)], axis=1)
        m = idx.shape[0]
        v = np.empty((2 * m, 3))
        v[0::2] = right
        v[1::2] = left
        k = np.arange(m - 1)
        r0, l0, r1, l1 = base + 2 * k, base + 2 * k + 1, base + 2 * k + 2, base + 2 * k + 3
        faces.append(np.stack([r0, r1, l1], axis=1))
        faces.append(np.stack([r0, l1, l0], axis=1))
        verts.append(v)
        uv = np.zeros((2 * m, 2))
        if tex_m > 0.0:
            uv[0::2, 0], uv[1::2, 0] = d_right / tex_m, d_left / tex_m
            uv[0::2, 1] = uv[1::2, 1] = s_along / tex_m
        uvs.append(uv)
        base += 2 * m
    return np.concatenate(verts), np.concatenate(faces).astype(np.int64), np.concatenate(uvs)


def _dash_spans(track: Track, dash_m: float, gap_m: float) -> list[tuple[int, int]]:
    period = dash_m + gap_m
    n_dash = max(1, int(track.length // period))
    per = track.n / n_dash  # fit a whole number of periods into the lap
    dash = int(round(per * dash_m / period))
    return [(int(round(i * per)), int(round(i * per)) + dash + 1) for i in range(n_dash)]


def build_mjcf(
    track: Track, style: WorldStyle | None = None, vehicle: VehicleParams | None = None
) -> str:
    """MJCF XML for ``track`` with the car at the start line.

    Args:
        track: the centreline (its ``lane_width_m`` sets the marking positions).
        style: appearance (default :class:`WorldStyle`).
        vehicle: car geometry (default :class:`VehicleParams`).

    Returns:
        An XML string for ``mujoco.MjModel.from_xml_string``: one mocap body ``car`` with camera
        ``front``; no joints, no contacts.
    """
    st = style if style is not None else WorldStyle()
    vp = vehicle if vehicle is not None else VehicleParams()
    half = 0.5 * track.lane_width_m
    mw = 0.5 * st.marking_width_m
    meshes: list[tuple[str, FloatArray, np.ndarray, RGBA, FloatArray | None]] = []
    textured = st.road_texture_rgb is not None
    v, f, uv = ribbon(
        track, half + mw + st.shoulder_m, -(half + mw + st.shoulder_m), 0.01, tex_m=2.0
    )
    meshes.append(("road", v, f, st.road_rgba, uv if textured else None))
    dashes = _dash_spans(track, st.dash_m, st.gap_m)
    for name, d, dashed in (
        ("mark_left", half, st.left_dashed),
        ("mark_right", -half, st.right_dashed),
    ):
        v, f, _ = ribbon(
            track, d + mw, d - mw, 0.02, dashes if dashed else None, step=2 if dashed else 4
        )
        meshes.append((name, v, f, st.marking_rgba, None))
    if st.centre_line:
        v, f, _ = ribbon(track, mw, -mw, 0.02, dashes, step=2)
        meshes.append(("mark_centre", v, f, st.centre_rgba, None))

    extent = float(max(np.ptp(track.x), np.ptp(track.y)))
    cx, cy = float(track.x.mean()), float(track.y.mean())
    ground = 0.5 * extent + 150.0
    asset_meshes = "\n".join(
        f'    <mesh name="{name}" inertia="shell" vertex="{_fmt(v)}" face="{_ints(f)}"'
        + (f' texcoord="{_fmt(uv)}"' if uv is not None else "")
        + "/>"
        for name, v, f, _, uv in meshes
    )
    geoms = "\n".join(
        f'    <geom name="{name}" type="mesh" mesh="{name}" '
        + ('material="asphalt" ' if uv is not None else f'rgba="{_rgb(rgba)}" ')
        + 'contype="0" conaffinity="0" mass="0"/>'
        for name, _, _, rgba, uv in meshes
    )
    road_tex = ""
    if textured:
        assert st.road_texture_rgb is not None
        road_tex = (
            f'    <texture name="asphalt" type="2d" builtin="flat" width="64" height="64" '
            f'mark="random" random="{st.road_texture_random:.3f}" '
            f'rgb1="{_rgb(st.road_rgba[:3])}" markrgb="{_rgb(st.road_texture_rgb)}"/>\n'
            f'    <material name="asphalt" texture="asphalt" specular="0" shininess="0" '
            f'reflectance="0"/>\n'
        )
    # Camera axes: image right = car -y, image up = tilted +z; pitch down p, yaw left psi.
    p, psi = st.camera_pitch_rad, st.camera_yaw_rad
    cam_axes = (
        f"{math.sin(psi):.6f} {-math.cos(psi):.6f} 0 "
        f"{math.sin(p) * math.cos(psi):.6f} {math.sin(p) * math.sin(psi):.6f} {math.cos(p):.6f}"
    )
    amb = st.ambient
    body_hl = 0.5 * vp.length_m
    body_cx = body_hl - vp.rear_overhang_m
    hw = 0.5 * vp.width_m
    ld = st.light_diffuse
    return f"""<mujoco model="lane_track_{track.seed}">
  <compiler angle="radian"/>
  <option timestep="0.01"/>
  <statistic extent="10" center="{cx:.2f} {cy:.2f} 0"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <map znear="0.01" zfar="40"/>
    <headlight ambient="{amb:.3f} {amb:.3f} {amb:.3f}" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" width="32" height="32"
             rgb1="{_rgb(st.sky_top_rgb)}" rgb2="{_rgb(st.sky_bottom_rgb)}"/>
    <texture name="grass" type="2d" builtin="flat" width="128" height="128" mark="random"
             random="{st.grass_random:.3f}" rgb1="{_rgb(st.grass_rgb)}"
             markrgb="{_rgb(st.grass_mark_rgb)}"/>
    <material name="grass" texture="grass" texrepeat="{ground / 4:.1f} {ground / 4:.1f}"
              specular="0" shininess="0" reflectance="0"/>
{road_tex}{asset_meshes}
  </asset>
  <worldbody>
    <light name="sun" directional="true" castshadow="false" pos="0 0 50" dir="0.3 0.2 -1"
           diffuse="{ld:.3f} {ld:.3f} {ld:.3f}" specular="0 0 0"/>
    <geom name="ground" type="plane" pos="{cx:.2f} {cy:.2f} 0" size="{ground:.1f} {ground:.1f} 1"
          material="grass" contype="0" conaffinity="0"/>
{geoms}
    <body name="{CAR_BODY}" mocap="true" pos="0 0 0">
      <geom name="car_body" type="box" group="{CAR_GEOM_GROUP}" pos="{body_cx:.3f} 0 0.75"
            size="{body_hl:.3f} {hw:.3f} 0.5" rgba="0.75 0.12 0.10 1" contype="0" conaffinity="0"/>
      <geom name="car_cabin" type="box" group="{CAR_GEOM_GROUP}" pos="{body_cx - 0.3:.3f} 0 1.45"
            size="{0.5 * body_hl:.3f} {hw - 0.1:.3f} 0.25" rgba="0.2 0.25 0.3 1" contype="0"
            conaffinity="0"/>
      <camera name="{CAMERA_NAME}"
              pos="{st.camera_x_m:.3f} {st.camera_y_m:.3f} {st.camera_height_m:.3f}"
              xyaxes="{cam_axes}" fovy="{st.camera_fovy_deg:.2f}"/>
      <camera name="chase" pos="-7 0 3.5" xyaxes="0 -1 0 0.34 0 0.94" fovy="60"/>
    </body>
  </worldbody>
</mujoco>
"""
