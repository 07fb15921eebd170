"""NCP/AutoNCP/FullyConnected/Random wirings against ncps.wirings 1.0.1 (the reference)."""

import json

import ncps.wirings as ref
import numpy as np
import pytest

from ltc_controller.models.wiring import NCP, AutoNCP, FullyConnected, Random, Wiring


def _ref_built(wiring, input_dim):
    wiring.build(input_dim)
    return wiring.adjacency_matrix, wiring.sensory_adjacency_matrix


def _assert_same(ours, ref_adj, ref_sensory):
    np.testing.assert_array_equal(ours.adjacency_matrix, ref_adj)
    np.testing.assert_array_equal(ours.sensory_adjacency_matrix, ref_sensory)


NCP_CASES = [
    ((12, 6, 1, 6, 4, 6, 6), 32),  # the 19-neuron lane-keeping network
    ((10, 10, 8, 6, 6, 4, 6), 8),
    ((18, 12, 4, 6, 4, 4, 6), 256),  # drone NCP (Chahine et al. 2023)
    ((5, 3, 2, 2, 3, 9, 3), 3),
    ((3, 4, 2, 3, 2, 0, 4), 40),
]


@pytest.mark.parametrize("seed", [22222, 1, 7, 20190120])
@pytest.mark.parametrize(("args", "input_dim"), NCP_CASES)
def test_ncp_adjacency_and_polarity_equal_ncps(
    args: tuple[int, int, int, int, int, int, int], input_dim: int, seed: int
) -> None:
    ours = NCP(*args, seed=seed).build(input_dim)
    _assert_same(ours, *_ref_built(ref.NCP(*args, seed=seed), input_dim))


@pytest.mark.parametrize("seed", [22222, 3, 99])
@pytest.mark.parametrize(
    ("units", "outputs", "sparsity", "input_dim"),
    [(19, 1, 0.5, 32), (28, 4, 0.5, 20), (16, 1, 0.3, 2), (40, 7, 0.9, 11)],
)
def test_autoncp_equals_ncps(units, outputs, sparsity, input_dim, seed):
    ours = AutoNCP(units, outputs, sparsity, seed=seed).build(input_dim)
    _assert_same(ours, *_ref_built(ref.AutoNCP(units, outputs, sparsity, seed=seed), input_dim))


@pytest.mark.parametrize(
    ("units", "outputs", "self_conn", "input_dim"), [(8, 4, True, 3), (5, None, False, 7)]
)
def test_fully_connected_equals_ncps(units, outputs, self_conn, input_dim):
    ours = FullyConnected(units, outputs, self_connections=self_conn).build(input_dim)
    reference = ref.FullyConnected(units, outputs, self_connections=self_conn)
    _assert_same(ours, *_ref_built(reference, input_dim))


@pytest.mark.parametrize(
    ("units", "outputs", "sparsity", "seed", "input_dim"),
    [(8, 3, 0.5, 7, 5), (10, None, 0.0, 1111, 3), (6, 2, 0.9, 3, 40), (19, 1, 0.75, 22, 32)],
)
def test_random_equals_ncps_including_its_double_sensory_polarity_draw(
    units, outputs, sparsity, seed, input_dim
):
    unbuilt = Random(units, outputs, sparsity, seed)
    np.testing.assert_array_equal(
        unbuilt.adjacency_matrix, ref.Random(units, outputs, sparsity, seed).adjacency_matrix
    )
    ours = unbuilt.build(input_dim)
    _assert_same(ours, *_ref_built(ref.Random(units, outputs, sparsity, seed), input_dim))
    expected = int(np.round(input_dim * units * (1 - sparsity)))
    assert ours.sensory_synapse_count == expected
    assert ours.output_dim == (units if outputs is None else outputs)


def test_one_random_wiring_serves_two_layers_with_different_inputs():
    wiring = Random(12, 2, 0.5, 4)
    first, second = wiring.build(7), wiring.build(30)
    assert wiring.input_dim is None
    _assert_same(first, *_ref_built(ref.Random(12, 2, 0.5, 4), 7))
    _assert_same(second, *_ref_built(ref.Random(12, 2, 0.5, 4), 30))


def test_lane_keeping_ncp_synapse_counts_match_reference_notes():
    wiring = NCP(12, 6, 1, 6, 4, 6, 6).build(32)
    assert (wiring.units, wiring.output_dim, wiring.input_dim) == (19, 1, 32)
    assert (wiring.synapse_count, wiring.sensory_synapse_count) == (58, 192)


def test_build_is_pure_and_one_wiring_serves_two_input_sizes():
    wiring = NCP(12, 6, 1, 6, 4, 6, 6)
    a, b = wiring.build(32), wiring.build(8)
    assert wiring.input_dim is None and not wiring.is_built()
    assert (a.input_dim, b.input_dim) == (32, 8)
    assert a.build(32) is a
    _assert_same(a, *_ref_built(ref.NCP(12, 6, 1, 6, 4, 6, 6), 32))
    _assert_same(b, *_ref_built(ref.NCP(12, 6, 1, 6, 4, 6, 6), 8))
    assert not a.adjacency_matrix.flags.writeable


@pytest.mark.parametrize(
    "wiring",
    [
        NCP(12, 6, 1, 6, 4, 6, 6, seed=5, input_dim=32),
        AutoNCP(28, 4, 0.4, seed=9, input_dim=20),
        FullyConnected(6, 2, erev_init_seed=3, self_connections=False, input_dim=4),
        NCP(12, 6, 1, 6, 4, 6, 6),
        Random(9, 2, 0.6, 5, input_dim=11),
        Random(9, 2, 0.6, 5),
    ],
)
def test_config_round_trips_through_json(wiring):
    config = json.loads(json.dumps(wiring.get_config()))
    again = Wiring.from_config(config)
    assert type(again) is type(wiring)
    assert again.get_config() == wiring.get_config()
    np.testing.assert_array_equal(again.adjacency_matrix, wiring.adjacency_matrix)
    if wiring.is_built():
        np.testing.assert_array_equal(
            again.sensory_adjacency_matrix, wiring.sensory_adjacency_matrix
        )
    assert type(wiring).from_config(config) == wiring


def test_neuron_groups_are_motor_command_inter_sensory():
    groups = NCP(12, 6, 1, 6, 4, 6, 6, input_dim=32).neuron_groups
    assert groups["motor"] == (0,)
    assert groups["command"] == tuple(range(1, 7))
    assert groups["inter"] == tuple(range(7, 19))
    assert groups["sensory"] == tuple(range(32))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: NCP(12, 6, 1, 6, 4, 6, 7), "motor_fanin"),
        (lambda: NCP(5, 6, 1, 6, 4, 6, 6), "sensory_fanout"),
        (lambda: NCP(12, 3, 1, 6, 4, 6, 3), "inter_fanout"),
        (lambda: AutoNCP(5, 3), "output_size"),
        (lambda: AutoNCP(19, 1, 0.05), "sparsity_level"),
        (lambda: Random(5, 1, 1.0), "sparsity_level"),
        (lambda: Wiring.from_config({"type": "Nope"}), "unknown wiring type"),
        (lambda: NCP.from_config({"type": "AutoNCP", "units": 19, "output_size": 1}), "expected"),
    ],
)
def test_invalid_wirings_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
