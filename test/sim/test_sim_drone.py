"""Drone scenario: the Crazyflie's velocity controller, landing, collisions, the seeded worlds,
task metrics, the named shifts and the privileged expert."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import math
from dataclasses import replace

import numpy as np
import pytest

from ltc_controller.sim.conditions import ImageEffects
from ltc_controller.sim.drone.conditions import (
    DRONE_CONDITIONS,
    get_drone_condition,
    parse_drone_conditions,
)
from ltc_controller.sim.drone.drone_sim import HISTORY_COLUMNS, DroneSim, FlightMode
from ltc_controller.sim.drone.quadrotor import load_quadrotor
from ltc_controller.sim.drone.scenario import (
    DronePerturbationConfig,
    PerturbedDroneExpert,
    fly_expert,
    make_drone_sim,
)
from ltc_controller.sim.drone.world import (
    DroneWorld,
    Obstacle,
    WorldGenerationError,
    WorldParams,
    generate_world,
    reachable,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fsim():
    """A drone without a renderer for the flight-controller tests (reset by each)."""
    sim = DroneSim(0, render_enabled=False)
    yield sim
    sim.close()


def _open_world(obstacles=(), target=(8.0, 0.0, math.pi), params=None):
    return DroneWorld(0, 0, params or WorldParams(), tuple(obstacles), target, (0.0, 0.0, 1.0, 0.0))


# -- airframe and flight controller ---------------------------------------------------------------


def test_airframe_is_the_identified_crazyflie_from_drone_models():
    q = load_quadrotor()
    assert q.name == "cf2x_L250" and q.mjcf_path.is_file()
    assert q.mass_kg == pytest.approx(0.0319) and q.inertia[2] == pytest.approx(29.8e-6)
    assert 1.3 < q.thrust_to_weight < 1.7
    with pytest.raises(ValueError, match="unknown airframe"):
        load_quadrotor("cf3")


def test_hover_holds_altitude_and_position_for_10_s(fsim):
    fsim.reset()
    zs = []
    for _ in range(100):
        fsim.step(0.1)
        zs.append(fsim.altitude)
    assert max(abs(z - 1.0) for z in zs) < 0.02
    assert float(np.hypot(*fsim.position[:2])) < 0.02
    # The motors carry the weight: total thrust = m g within 1 %.
    q = fsim.quad
    assert sum(fsim.motor_thrusts) == pytest.approx(q.hover_thrust_n, rel=0.01)


def test_forward_velocity_step_tracked_within_1_s(fsim):
    """1 m/s forward: within 5 % after 1.0 s, within 2 % from 2 s on; altitude held."""
    fsim.reset()
    fsim.set_command(1.0, 0.0, 0.0, 0.0)
    fsim.step(1.0)
    assert fsim.velocity[0] == pytest.approx(1.0, abs=0.05)
    for _ in range(20):
        fsim.step(0.1)
        if fsim.time >= 2.0:
            assert fsim.velocity[0] == pytest.approx(1.0, abs=0.02)
            assert abs(fsim.velocity[1]) < 0.02
    assert fsim.altitude == pytest.approx(1.0, abs=0.03)


def test_body_frame_setpoint_follows_the_heading(fsim):
    """Turn to 90 deg, then 'forward' is world +y and 'left' is world -x (REP 103)."""
    fsim.reset()
    fsim.set_command(0.0, 0.0, 0.0, 0.5)
    fsim.step(math.pi / 2 / 0.5 + 0.05)
    fsim.set_command(0.0, 0.0, 0.0, 0.0)
    fsim.step(1.0)
    assert fsim.yaw == pytest.approx(math.pi / 2, abs=0.1)
    fsim.set_command(0.8, 0.5, 0.0, 0.0)
    fsim.step(2.0)
    v = fsim.velocity
    c, s = math.cos(fsim.yaw), math.sin(fsim.yaw)
    assert c * 0.8 - s * 0.5 == pytest.approx(v[0], abs=0.05)
    assert s * 0.8 + c * 0.5 == pytest.approx(v[1], abs=0.05)
    lin, ang = fsim.body_twist()
    assert lin[:2] == pytest.approx([0.8, 0.5], abs=0.05)


def test_yaw_rate_and_climb_steps_tracked(fsim):
    fsim.reset()
    fsim.set_command(0.0, 0.0, 0.5, 0.8)
    fsim.step(1.0)
    y0, z0 = fsim.yaw, fsim.altitude
    fsim.step(0.5)
    rate = math.remainder(fsim.yaw - y0, math.tau) / 0.5
    assert rate == pytest.approx(0.8, rel=0.1)
    assert (fsim.altitude - z0) / 0.5 == pytest.approx(0.5, rel=0.1)


def test_setpoints_are_clipped_and_nonfinite_ones_rejected(fsim):
    fsim.reset()
    assert fsim.set_command(10.0, 0.0, -5.0, 9.0)
    g = fsim.controller.g
    assert fsim.command == pytest.approx(
        (g.max_speed_xy_mps, 0.0, -g.max_speed_z_mps, g.max_yaw_rate_rps)
    )
    assert not fsim.set_command(float("nan"), 0.0, 0.0, 0.0)
    assert fsim.command[0] == pytest.approx(g.max_speed_xy_mps)
    with pytest.raises(ValueError, match="dt"):
        fsim.step(-0.1)


def test_land_descends_at_the_bounded_rate_then_disarms_and_stays(fsim):
    fsim.reset()
    fsim.set_command(0.5, 0.0, 0.0, 0.0)
    fsim.step(1.0)
    fsim.land()
    fsim.set_command(1.0, 0.0, 1.0, 0.0)  # ignored while landing
    fsim.step(1.5)
    assert fsim.mode == FlightMode.LANDING
    vz_max = fsim.controller.g.land_speed_mps
    assert fsim.velocity[2] == pytest.approx(-vz_max, abs=0.05)
    assert float(np.hypot(*fsim.velocity[:2])) < 0.05
    fsim.step(4.0)
    assert fsim.mode == FlightMode.LANDED and not fsim.armed
    assert fsim.motor_thrusts == (0.0, 0.0, 0.0, 0.0)
    z = fsim.altitude
    assert z < 0.1
    fsim.step(1.0)
    assert fsim.altitude == pytest.approx(z, abs=0.005)
    assert fsim.metrics.collisions == 0  # touchdown is not a collision
    assert fsim.touchdown_on == "ground"


def test_landing_on_the_chairs_seat_is_a_touchdown_there_once_at_rest():
    # World 7 (the drone demo's): the drone hovers over the chair and lands; the seat stops the
    # descent at 0.57 m. It used to stay in `landing` there with armed motors, counted as a
    # collision, until it slid off.
    with DroneSim(7, render_enabled=False) as sim:
        tx, ty, _ = sim.world.target
        sim.data.qpos[0:3] = (tx, ty, 1.2)
        sim._mj.mj_forward(sim.model, sim.data)
        sim.step(1.0)
        sim.land()
        sim.step(1.0)
        assert sim.mode == FlightMode.LANDING and sim.touchdown_on == ""
        sim.step(4.0)
        assert sim.mode == FlightMode.LANDED and not sim.armed
        assert sim.touchdown_on == "target_seat"
        assert sim.altitude == pytest.approx(0.565, abs=0.02)  # seat top 0.50 m + the sphere
        assert sim.metrics.collisions == 0
        sim.step(5.0)
        assert sim.altitude == pytest.approx(0.565, abs=0.02)  # stays on the seat, disarmed
        assert sim.motor_thrusts == (0.0, 0.0, 0.0, 0.0)


def test_flying_into_a_trunk_is_one_collision():
    trunk = Obstacle("trunk", "cylinder", 2.5, 0.0, 0.0, (0.2, 0.0, 2.5))
    with DroneSim(world=_open_world([trunk]), render_enabled=False) as sim:
        sim.set_command(1.0, 0.0, 0.0, 0.0)
        sim.step(2.0)
        assert sim.metrics.collisions == 0
        sim.step(2.0)
        m = sim.metrics
        assert m.collisions == 1 and m.collided and m.done and not m.success
        assert sim.last_collision.startswith("obs")
        assert sim.position[0] < 2.5 - 0.2  # the trunk stopped it


# -- worlds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scene", ["forest", "urban"])
def test_worlds_are_seeded_reachable_and_do_not_overlap(scene):
    p = WorldParams(scene=scene) if scene == "forest" else get_drone_condition("urban").world
    worlds = [generate_world(s, p) for s in range(12)]
    assert generate_world(3, p) == worlds[3]
    assert len({w.target for w in worlds}) == len(worlds)
    for w in worlds:
        assert reachable(w)
        tx, ty, _ = w.target
        r = math.hypot(tx, ty)
        assert p.target_range_m[0] <= r <= p.target_range_m[1]
        assert abs(math.atan2(ty, tx)) <= p.target_bearing_rad + 1e-9
        assert len(w.obstacles) >= (10 if scene == "forest" else 6)
        d_start, _, _ = w.clearance(0.0, 0.0, target=False)
        d_target, _, _ = w.clearance(tx, ty, target=False)
        assert d_start.min() >= p.clear_radius_m - 1e-6
        assert d_target.min() >= p.clear_radius_m - 1e-6
        for i, a in enumerate(w.obstacles):
            for b in w.obstacles[i + 1 :]:
                gap = math.hypot(a.x - b.x, a.y - b.y) - a.footprint_radius - b.footprint_radius
                assert gap >= p.min_gap_m - 1e-9


def test_a_walled_target_is_unreachable_and_generation_says_so():
    tx = 8.0
    wall = [
        Obstacle("building", "box", tx + 1.6 * math.cos(a), 1.6 * math.sin(a), a, (0.3, 0.9, 2.0))
        for a in np.linspace(0.0, 2 * math.pi, 9)[:-1]
    ]
    assert not reachable(_open_world(wall, (tx, 0.0, 0.0)))
    assert reachable(_open_world(wall[:4], (tx, 0.0, 0.0)))  # a gap on one side
    dense = WorldParams(
        density_per_100m2=60.0, min_gap_m=0.0, corridor_half_width_m=0.0, trunk_radius_m=(0.4, 0.6)
    )
    with pytest.raises(WorldGenerationError, match="seed 1"):
        generate_world(1, dense, max_attempts=3)
    with pytest.raises(ValueError):
        generate_world(-1)


def test_clearance_of_boxes_and_cylinders():
    box = Obstacle("building", "box", 5.0, 0.0, math.pi / 2, (1.0, 0.5, 2.0))  # 1 m wide in x
    cyl = Obstacle("trunk", "cylinder", 0.0, 5.0, 0.0, (0.25, 0.0, 2.0))
    w = _open_world([box, cyl], target=(20.0, 0.0, 0.0))
    d, nx, ny = w.clearance(np.array([3.0, 5.0, 0.0]), np.array([0.0, 3.0, 3.0]), target=False)
    assert d[0, 0] == pytest.approx(1.5) and (nx[0, 0], ny[0, 0]) == pytest.approx((-1.0, 0.0))
    assert d[1, 0] == pytest.approx(2.0) and (nx[1, 0], ny[1, 0]) == pytest.approx((0.0, 1.0))
    assert d[2, 1] == pytest.approx(1.75) and (nx[2, 1], ny[2, 1]) == pytest.approx((0.0, -1.0))


# -- task metrics ---------------------------------------------------------------------------------


def test_reaching_the_target_is_timed_and_a_timeout_is_reported():
    with DroneSim(world=_open_world(), render_enabled=False) as sim:
        sim.set_command(1.0, 0.0, 0.0, 0.0)
        while not sim.metrics.done:
            sim.step(0.05)
        m = sim.metrics
        assert m.reached and m.success and not m.timed_out
        # 7 m to the 1 m radius at ~1 m/s after a ~0.5 s rise.
        assert 7.0 < m.time_to_target < 8.5
        assert m.distance <= 1.0 and m.min_distance <= m.distance + 1e-12
        h = sim.history()
        assert h.shape[1] == len(HISTORY_COLUMNS)
        dist = h[:, HISTORY_COLUMNS.index("distance")]
        assert dist[0] == pytest.approx(8.0) and dist[-1] == pytest.approx(m.distance, abs=0.02)
    short = replace(WorldParams(), time_limit_s=2.0)
    with DroneSim(world=_open_world(params=short), render_enabled=False) as sim:
        sim.step(2.5)
        m = sim.metrics
        assert m.timed_out and m.done and not m.reached and not m.success
        assert math.isnan(m.time_to_target) and m.distance == pytest.approx(8.0, abs=0.02)


# -- conditions -----------------------------------------------------------------------------------


def _frame(name, seed=2):
    c = get_drone_condition(name)
    with make_drone_sim(c, seed) as sim:
        img = sim.render()
        world = sim.world
    return ImageEffects(c.image_condition, 0, *img.shape[:2])(img), world


def _red(img):
    f = img.astype(np.int32)
    return int(np.count_nonzero((f[..., 0] > 120) & (f[..., 1] < 70) & (f[..., 2] < 70)))


def test_named_conditions_parse_like_the_cars():
    assert [c.name for c in parse_drone_conditions("clean, fog")] == ["clean", "fog"]
    assert len(parse_drone_conditions("all")) == len(DRONE_CONDITIONS) >= 13
    assert [c.name for c in DRONE_CONDITIONS.values() if c.in_distribution] == ["clean"]
    with pytest.raises(KeyError, match="known: clean"):
        get_drone_condition("mars")


def test_front_camera_sees_the_target_at_the_start():
    img, _ = _frame("clean")
    assert img.shape == (78, 200, 3) and img.dtype == np.uint8
    assert _red(img) >= 15


def test_appearance_shifts_change_the_image_as_claimed():
    clean, _ = _frame("clean")
    lum = {n: float(_frame(n)[0].mean()) for n in ("dusk", "winter")}
    assert lum["dusk"] < 0.5 * clean.mean()
    lower = slice(50, None)  # rows of ground
    winter, _ = _frame("winter")
    assert winter[lower].mean() > clean[lower].mean() + 80
    autumn, _ = _frame("autumn")
    assert autumn[lower, :, 0].mean() > clean[lower, :, 0].mean() + 30  # redder ground
    fog, _ = _frame("fog")

    def edges(img):  # mean horizontal gradient: fog washes out the far trunks
        return float(np.abs(np.diff(img.astype(np.float64), axis=1)).mean())

    assert edges(fog) < 0.8 * edges(clean)
    urban, _ = _frame("urban")
    g = clean.astype(np.float64)
    u = urban.astype(np.float64)
    # Green dominates the forest, not the city.
    assert (g[..., 1] - g[..., 2]).mean() > (u[..., 1] - u[..., 2]).mean() + 20
    noisy, _ = _frame("noise_0.2")
    resid = noisy.astype(np.float64) / 255 - clean.astype(np.float64) / 255
    assert resid.std() > 0.25  # variance 0.2 before clipping


def test_target_shifts_change_the_geometry_and_the_view():
    seeds = range(4)
    for s in seeds:
        rot = generate_world(s, get_drone_condition("target_rotated").world)
        tx, ty, tyaw = rot.target
        facing = math.atan2(-ty, -tx)
        assert abs(math.remainder(tyaw - facing, math.tau)) >= math.radians(90) - 1e-9
        far = generate_world(s, get_drone_condition("range").world)
        assert math.hypot(*far.target[:2]) >= 14.0
        assert (
            sum(
                o.kind == "distractor"
                for o in generate_world(s, get_drone_condition("distractors").world).obstacles
            )
            == 4
        )
    # The bush hides a good part of the target: fewer red pixels over the same targets.
    red_clean = sum(_red(_frame("clean", s)[0]) for s in seeds)
    red_occ = sum(_red(_frame("target_occluded", s)[0]) for s in seeds)
    assert red_occ < 0.75 * red_clean


# -- expert ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "n", "need"), [("clean", 16, 15), ("target_occluded", 8, 7)])
def test_perturbed_expert_reaches_the_target_in_most_worlds(condition, n, need):
    ok = 0
    bursts = 0
    for seed in range(n):
        with make_drone_sim(condition, seed, render_enabled=False) as sim:
            ex = PerturbedDroneExpert(seed=seed)
            m = fly_expert(sim, ex)
            ok += m.success
            bursts += ex.bursts
    assert ok >= need
    assert bursts >= n  # about 0.3 bursts/s over ~8 s flights: they did happen


def test_expert_label_is_clean_while_the_executed_setpoint_is_perturbed():
    cfg = replace(DronePerturbationConfig(), lateral_rate_hz=50.0, yaw_rate_hz=50.0)
    with make_drone_sim("clean", 0, render_enabled=False) as sim:
        ex = PerturbedDroneExpert(cfg, seed=1)
        ex.command(sim)
        sim.step(0.05)
        cmd = ex.command(sim)
        assert cmd.perturbed and cmd.clearance > cfg.safe_clearance_m
        assert cmd.label != cmd.executed
        clean = PerturbedDroneExpert(DronePerturbationConfig.none()).command(sim)
        assert cmd.label == pytest.approx(clean.label)
        assert not clean.perturbed and clean.executed == clean.label


# -- run log and plot -----------------------------------------------------------------------------


def test_run_arrays_and_plot_of_an_expert_flight(tmp_path):
    from PIL import Image

    from ltc_controller.sim.drone.plot import OBSTACLE_COLUMNS, plot_drone_run, run_arrays

    with make_drone_sim("urban", 1, render_enabled=False, record_history=True) as sim:
        m = fly_expert(sim)
        a = run_arrays(sim)
        n_obs = len(sim.world.obstacles)
    assert m.success
    assert a["obstacles"].shape == (n_obs, len(OBSTACLE_COLUMNS))
    assert a["obstacles"][:, OBSTACLE_COLUMNS.index("is_box")].all()  # urban: buildings
    assert a["phys_t"].size == a["phys_x"].size >= int(m.time * 100)
    assert a["phys_distance"][-1] <= float(a["success_radius_m"]) + 0.02
    np.savez(tmp_path / "run.npz", **a)
    png = plot_drone_run(tmp_path / "run.npz", tmp_path / "plots" / "run.png")
    img = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
    assert img.shape[0] > 400 and img.shape[1] > 800
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert red.sum() > 20  # the target is drawn
