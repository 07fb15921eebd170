"""Procedural lane-keeping tracks: a seeded closed loop of straights and left/right curves.

Conventions (REP 103): metres, radians, x forward / y left in the track's world frame, yaw
counter-clockwise from +x. Curvature is ``1 / radius`` in 1/m, positive for a left turn.

Construction. A track is a sequence of *turns* separated by *straights*. A turn has a curvature
profile that ramps linearly from 0 to its peak ``kappa``, holds, and ramps back to 0 (clothoid
transitions, so steering never has to jump). Turn angles are drawn so that they sum to exactly
``2*pi`` (one counter-clockwise loop, with right-hand turns in between). Because every turn is a
rigid piece whose shape does not depend on where it sits, the end point of the loop is *linear* in
the straight lengths; two straights whose directions bracket the closing gap are lengthened to
close it exactly. Candidates whose road would overlap itself are rejected and redrawn from the same
seeded generator, so a seed always gives the same track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

TWO_PI = 2.0 * math.pi


def wrap_angle(a: float) -> float:
    """``a`` wrapped into ``[-pi, pi)`` (radians)."""
    return (a + math.pi) % TWO_PI - math.pi


class TrackGenerationError(RuntimeError):
    """No valid track could be drawn for the given seed and parameters (loosen them)."""


@dataclass(frozen=True)
class TrackParams:
    """Shape of a procedural track.

    Attributes:
        lane_width_m: distance between the centres of the two edge markings (m).
        target_length_m: approximate lap length (m); the closing straights make the real length
            differ by up to 40 %.
        max_curvature: largest ``|curvature|`` on the track (1/m). 0.04 (25 m radius) gives a
            lateral acceleration of 2.6 m/s^2 at 8 m/s.
        min_curvature: smallest peak ``|curvature|`` of a turn (1/m).
        ramp_m: length of each clothoid transition into and out of a turn (m).
        straight_m: range of straight lengths between turns (m).
        turn_count: range of the number of turns per lap.
        right_turn_fraction: probability that a turn (other than the closing ones) turns right.
        spacing_m: distance between centreline samples (m).
        min_separation_m: least distance between centreline points that are far apart along the
            track (m); keeps roads from overlapping.
        max_attempts: redraws before :class:`TrackGenerationError`.
    """

    lane_width_m: float = 3.75
    target_length_m: float = 600.0
    max_curvature: float = 0.04
    min_curvature: float = 0.015
    ramp_m: float = 8.0
    straight_m: tuple[float, float] = (5.0, 40.0)
    turn_count: tuple[int, int] = (6, 10)
    right_turn_fraction: float = 0.4
    spacing_m: float = 0.25
    min_separation_m: float = 14.0
    max_attempts: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.lane_width_m < 20.0:
            raise ValueError(f"TrackParams.lane_width_m={self.lane_width_m}: expected in (0, 20) m")
        if not 0.0 < self.min_curvature <= self.max_curvature:
            raise ValueError(
                f"TrackParams: need 0 < min_curvature ({self.min_curvature}) <= max_curvature "
                f"({self.max_curvature})"
            )
        if self.spacing_m <= 0.0 or self.target_length_m <= 20.0 * self.spacing_m:
            raise ValueError("TrackParams: spacing_m must be > 0 and much smaller than the length")


@dataclass(frozen=True)
class Frenet:
    """A pose expressed relative to the centreline.

    Attributes:
        s: arc length of the nearest centreline point, in ``[0, length)`` (m).
        d: signed lateral offset from the centreline, positive to the left of the driving
            direction (m).
        heading_error: ``yaw - centreline heading`` wrapped to ``[-pi, pi)``; positive when the
            vehicle points to the left of the track direction (rad).
        index: index of the centreline sample just before ``s``.
    """

    s: float
    d: float
    heading_error: float
    index: int


@dataclass(frozen=True, eq=False)
class Track:
    """A closed centreline sampled densely and uniformly in arc length.

    Arrays have shape ``(N,)``; sample ``i`` is at arc length ``s[i] = i * spacing``; the segment
    after the last sample closes the loop back to sample 0 (no duplicated end point).

    Attributes:
        x, y: centreline positions (m).
        heading: tangent direction (rad, CCW from +x, unwrapped: grows by ``2*pi`` per lap).
        curvature: signed curvature (1/m, positive = turning left).
        s: arc length (m).
        length: lap length (m), ``N * spacing``.
        lane_width_m: distance between the two edge markings (m).
        seed: the seed the track was drawn from.
    """

    x: FloatArray
    y: FloatArray
    heading: FloatArray
    curvature: FloatArray
    s: FloatArray
    length: float
    lane_width_m: float
    seed: int
    params: TrackParams = field(default_factory=TrackParams)

    @property
    def n(self) -> int:
        """Number of centreline samples."""
        return int(self.x.shape[0])

    @property
    def spacing(self) -> float:
        """Distance between samples (m)."""
        return self.length / self.n

    @property
    def xy(self) -> FloatArray:
        """Centreline as an ``(N, 2)`` array (m)."""
        return np.stack([self.x, self.y], axis=1)

    def edges(self, offset_m: float | None = None) -> tuple[FloatArray, FloatArray]:
        """Left and right polylines at ``+offset`` / ``-offset`` from the centreline.

        Args:
            offset_m: lateral offset (m); default half the lane width (the marking centres).

        Returns:
            ``(left, right)``, each ``(N, 2)`` (m).
        """
        off = 0.5 * self.lane_width_m if offset_m is None else offset_m
        nx, ny = -np.sin(self.heading), np.cos(self.heading)
        left = np.stack([self.x + off * nx, self.y + off * ny], axis=1)
        right = np.stack([self.x - off * nx, self.y - off * ny], axis=1)
        return left, right

    def wrap_s(self, s: float) -> float:
        """Arc length wrapped into ``[0, length)`` (m)."""
        return s % self.length

    def point_at(self, s: float) -> tuple[float, float, float, float]:
        """Interpolated centreline ``(x, y, heading, curvature)`` at arc length ``s`` (m, any value;
        wrapped around the loop). Heading is wrapped to ``[-pi, pi)``."""
        u = self.wrap_s(s) / self.spacing
        i = int(u) % self.n
        j = (i + 1) % self.n
        t = u - math.floor(u)
        x = (1.0 - t) * self.x[i] + t * self.x[j]
        y = (1.0 - t) * self.y[i] + t * self.y[j]
        dh = wrap_angle(float(self.heading[j] - self.heading[i]))
        h = wrap_angle(float(self.heading[i]) + t * dh)
        k = (1.0 - t) * self.curvature[i] + t * self.curvature[j]
        return float(x), float(y), h, float(k)

    def project(
        self,
        x: float,
        y: float,
        yaw: float = 0.0,
        s_hint: float | None = None,
        window_m: float = 25.0,
    ) -> Frenet:
        """Frenet projection of a pose onto the centreline.

        With ``s_hint`` only samples within ``window_m`` of it (along the track) are searched,
        O(window); without it the whole track is searched (vectorised, O(N)). Use the hint when
        tracking a vehicle step to step so that a point near a place where the loop passes close
        to itself projects onto the right part of the track.

        Args:
            x, y: position (m). yaw: heading (rad).
            s_hint: previous arc length (m) or None.
            window_m: half-width of the search window (m).

        Returns:
            :class:`Frenet` with ``s`` in ``[0, length)``.
        """
        n = self.n
        if s_hint is None:
            idx = np.arange(n)
        else:
            c = int(round(self.wrap_s(s_hint) / self.spacing))
            w = max(2, int(math.ceil(window_m / self.spacing)))
            idx = np.arange(c - w, c + w + 1) % n
        dx = self.x[idx] - x
        dy = self.y[idx] - y
        k = int(idx[int(np.argmin(dx * dx + dy * dy))])
        # Refine on the two segments touching the nearest sample.
        best: tuple[float, float, int, float] | None = None
        for i in ((k - 1) % n, k):
            j = (i + 1) % n
            ax, ay = float(self.x[i]), float(self.y[i])
            ex, ey = float(self.x[j]) - ax, float(self.y[j]) - ay
            seg2 = ex * ex + ey * ey
            t = min(1.0, max(0.0, ((x - ax) * ex + (y - ay) * ey) / seg2))
            px, py = ax + t * ex, ay + t * ey
            dist2 = (x - px) ** 2 + (y - py) ** 2
            if best is None or dist2 < best[0]:
                best = (dist2, t, i, (ex * (y - ay) - ey * (x - ax)) / math.sqrt(seg2))
        assert best is not None
        _, t, i, d = best
        s = self.wrap_s((i + t) * self.spacing)
        j = (i + 1) % n
        h = float(self.heading[i]) + t * wrap_angle(float(self.heading[j] - self.heading[i]))
        return Frenet(s=s, d=d, heading_error=wrap_angle(yaw - h), index=i)

    def project_many(self, xy: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Nearest-sample projection of many points (vectorised, for offline analysis).

        Args:
            xy: points, shape ``(M, 2)`` (m).

        Returns:
            ``(s, d)``: each ``(M,)``; ``s`` is the nearest sample's arc length (m, resolution
            ``spacing``), ``d`` the signed lateral offset (m, positive left). Memory O(M * N) in
            chunks of 256 points.
        """
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        s_out = np.empty(pts.shape[0])
        d_out = np.empty(pts.shape[0])
        for a in range(0, pts.shape[0], 256):
            p = pts[a : a + 256]
            d2 = (p[:, 0:1] - self.x[None, :]) ** 2 + (p[:, 1:2] - self.y[None, :]) ** 2
            k = np.argmin(d2, axis=1)
            h = self.heading[k]
            s_out[a : a + 256] = self.s[k]
            d_out[a : a + 256] = -np.sin(h) * (p[:, 0] - self.x[k]) + np.cos(h) * (
                p[:, 1] - self.y[k]
            )
        return s_out, d_out


def _turn_profile(angle: float, kappa_peak: float, ramp_m: float, ds: float) -> FloatArray:
    """Curvature samples (1/m) of a turn through ``angle`` rad: linear ramp, hold, ramp down.

    The integral (sum * ds) equals ``angle``; the peak is at most ``kappa_peak`` in magnitude.
    """
    sign = 1.0 if angle >= 0.0 else -1.0
    a = abs(angle)
    k = kappa_peak
    # Angle turned in the two ramps alone is k * ramp_m; shorten the ramps for small angles.
    ramp = ramp_m
    if k * ramp > a:
        ramp = a / k
    hold = (a - k * ramp) / k
    n_ramp = max(1, int(round(ramp / ds)))
    n_hold = int(round(hold / ds))
    up = (np.arange(n_ramp) + 0.5) / n_ramp
    prof = np.concatenate([up, np.ones(n_hold), up[::-1]])
    prof *= a / (prof.sum() * ds)  # exact turn angle after rounding
    return sign * prof


def _integrate(kappa: FloatArray, ds: float, h0: float = 0.0) -> tuple[FloatArray, ...]:
    """Heading and position of a curvature profile; exact arcs per sample (midpoint heading)."""
    dh = kappa * ds
    h_end = h0 + np.cumsum(dh)
    h_mid = h_end - 0.5 * dh
    x = np.concatenate([[0.0], np.cumsum(np.cos(h_mid) * ds)])
    y = np.concatenate([[0.0], np.cumsum(np.sin(h_mid) * ds)])
    h = np.concatenate([[h0], h_end])
    return x, y, h


def _draw_candidate(rng: np.random.Generator, p: TrackParams) -> FloatArray | None:
    """One closed curvature profile (1/m per sample of ``p.spacing_m``) or None if unclosable."""
    ds = p.spacing_m
    n_turns = int(rng.integers(p.turn_count[0], p.turn_count[1] + 1))
    n_right = int(rng.binomial(n_turns - 3, p.right_turn_fraction))
    right = -rng.uniform(math.radians(25.0), math.radians(90.0), size=n_right)
    n_left = n_turns - n_right
    left_total = TWO_PI - float(right.sum())
    left = rng.dirichlet(np.full(n_left, 2.0)) * left_total
    if left.max() > math.radians(200.0) or left.min() < math.radians(20.0):
        return None
    angles = np.concatenate([left, right])
    rng.shuffle(angles)
    kappas = rng.uniform(p.min_curvature, 0.97 * p.max_curvature, size=n_turns)
    turns = [
        _turn_profile(float(a), float(k), p.ramp_m, ds) for a, k in zip(angles, kappas, strict=True)
    ]
    straights = rng.uniform(p.straight_m[0], p.straight_m[1], size=n_turns)
    # End point displacement: straights contribute L_i * (cos h_i, sin h_i); turns are rigid pieces.
    heading = 0.0
    gap = np.zeros(2)
    dirs = np.zeros((n_turns, 2))
    for i, prof in enumerate(turns):
        dirs[i] = (math.cos(heading), math.sin(heading))
        gap += straights[i] * dirs[i]
        tx, ty, th = _integrate(prof, ds, heading)
        gap += (tx[-1], ty[-1])
        heading = float(th[-1])
    # Close: need sum_i extra_i * dirs[i] = -gap with extra_i >= 0; use the two straight directions
    # whose angular cone contains -gap.
    need = -gap
    ang = np.arctan2(dirs[:, 1], dirs[:, 0])
    target = math.atan2(need[1], need[0])
    rel = (ang - target + math.pi) % TWO_PI - math.pi  # signed angle from target to each dir
    neg = np.where(rel <= 0.0)[0]
    pos = np.where(rel > 0.0)[0]
    if neg.size == 0 or pos.size == 0:
        return None
    i = int(neg[np.argmax(rel[neg])])
    j = int(pos[np.argmin(rel[pos])])
    mat = np.stack([dirs[i], dirs[j]], axis=1)
    if abs(np.linalg.det(mat)) < 0.05:
        return None
    extra = np.linalg.solve(mat, need)
    if extra.min() < 0.0:
        return None
    straights[i] += extra[0]
    straights[j] += extra[1]
    pieces: list[FloatArray] = []
    for i, prof in enumerate(turns):
        pieces.append(np.zeros(int(round(straights[i] / ds))))
        pieces.append(prof)
    return np.concatenate(pieces)


def _self_overlaps(x: FloatArray, y: FloatArray, ds: float, min_sep: float) -> bool:
    """True if two centreline points further apart than ``3 * min_sep`` along the loop (either way)
    are closer than ``min_sep`` in the plane."""
    step = max(1, int(round(1.0 / ds)))
    px, py = x[::step], y[::step]
    m = px.shape[0]
    d2 = (px[:, None] - px[None, :]) ** 2 + (py[:, None] - py[None, :]) ** 2
    idx = np.arange(m)
    sep = np.abs(idx[:, None] - idx[None, :]) * step * ds
    sep = np.minimum(sep, m * step * ds - sep)
    return bool(np.any((d2 < min_sep**2) & (sep > 3.0 * min_sep)))


def generate_track(seed: int = 0, params: TrackParams | None = None) -> Track:
    """Draw a closed track from ``seed``.

    The lap starts at the origin heading along +x, at the start of a straight. The same seed and
    params always give the same track.

    Args:
        seed: random seed.
        params: shape parameters (defaults: :class:`TrackParams`).

    Returns:
        A :class:`Track` whose length is within 0.7x..1.4x of ``params.target_length_m``.

    Raises:
        TrackGenerationError: no valid candidate in ``params.max_attempts`` draws.
    """
    p = params if params is not None else TrackParams()
    rng = np.random.default_rng(seed)
    ds = p.spacing_m
    for _ in range(p.max_attempts):
        kappa = _draw_candidate(rng, p)
        if kappa is None:
            continue
        length = kappa.shape[0] * ds
        if not 0.7 * p.target_length_m <= length <= 1.4 * p.target_length_m:
            continue
        x, y, h = _integrate(kappa, ds)
        # Rounding straights to whole samples leaves a closing error of < ds per straight: spread
        # it linearly along the loop (a shear of a few cm over hundreds of metres).
        err_x, err_y = x[-1], y[-1]
        frac = np.arange(x.shape[0]) / (x.shape[0] - 1)
        x = x - frac * err_x
        y = y - frac * err_y
        x, y, h = x[:-1], y[:-1], h[:-1]
        if _self_overlaps(x, y, ds, p.min_separation_m):
            continue
        # Curvature at the samples (profile values are per segment; average the two neighbours).
        k_nodes = 0.5 * (kappa + np.roll(kappa, 1))
        # Heading at samples: mean of adjacent segment headings, consistent with the positions.
        n = x.shape[0]
        return Track(
            x=x.astype(np.float64),
            y=y.astype(np.float64),
            heading=h.astype(np.float64),
            curvature=k_nodes.astype(np.float64),
            s=np.arange(n, dtype=np.float64) * ds,
            length=n * ds,
            lane_width_m=p.lane_width_m,
            seed=seed,
            params=p,
        )
    raise TrackGenerationError(
        f"generate_track(seed={seed}): no closed, non-overlapping track in {p.max_attempts} draws "
        f"with target_length_m={p.target_length_m}, curvature in [{p.min_curvature}, "
        f"{p.max_curvature}]; raise target_length_m or max_curvature"
    )


def make_track(seed: int = 0, lane_width_m: float = 3.75, length_m: float = 600.0) -> Track:
    """:func:`generate_track` with the simulator node's parameter names (its defaults match the
    node's, so ``make_track(track_seed)`` is the track a default simulator drove on)."""
    return generate_track(seed, TrackParams(lane_width_m=lane_width_m, target_length_m=length_m))
