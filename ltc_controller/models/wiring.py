"""Neural circuit wirings: which neuron talks to which, and with what polarity.

A wiring fixes the sparsity pattern and the initial reversal potentials (polarity, +1 excitatory,
-1 inhibitory) of an LTC network (Lechner et al. 2020, *Neural circuit policies enabling auditable
autonomy*, Nat. Mach. Intell. 2:642-652, Fig. 1 and Methods "NCP design").

Matrices are indexed ``[source, destination]``:

* ``adjacency_matrix``: ``(H, H)`` int32 in {-1, 0, +1}, H = ``units``;
* ``sensory_adjacency_matrix``: ``(I, H)`` int32 in {-1, 0, +1}, I = ``input_dim``.

Neuron IDs follow ``ncps``: ``[0, M)`` motor, ``[M, M + C)`` command, ``[M + C, H)`` inter; the
first M state entries are the outputs. Sensory neurons are the I input features (own index space).

For the same arguments, seed and ``input_dim``, :class:`NCP`, :class:`AutoNCP`,
:class:`FullyConnected` and :class:`Random` draw exactly the adjacency and polarity of
``ncps.wirings`` 1.0.1: the random draws are made with the same generator, in the same order.
Where we differ from ncps, on purpose:

* building is pure: :meth:`Wiring.build` returns a built copy and never changes ``self``, so one
  wiring object can be shared by several layers or models (ncps binds a wiring to the first input
  size it sees and raises "Conflicting input dimensions" afterwards);
* :meth:`Wiring.get_config` / :meth:`Wiring.from_config` round-trip through plain JSON (arguments,
  seed, ``input_dim`` and a ``"type"`` tag); ncps's ``NCP.get_config`` does not;
* the matrices are read-only NumPy arrays.

Quirks of ncps that are reproduced because they change the drawn wiring: recurrent command synapses
are drawn with replacement (duplicates overwrite, so the real count can be lower), and the fan-in
given to unreached command neurons is clipped to the number of *command* neurons; :class:`Random`
draws the polarity of every sensory synapse twice (the second draw is kept).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = ["AutoNCP", "FullyConnected", "NCP", "Random", "Wiring", "wiring_from_config"]

IntMatrix = npt.NDArray[np.int32]


def _readonly(matrix: IntMatrix) -> IntMatrix:
    matrix.setflags(write=False)
    return matrix


class Wiring:
    """Base class of all wirings.

    Attributes:
        units: H, number of neurons (the state size).
        output_dim: M, number of motor neurons (the first M neurons are the outputs).
        input_dim: I, number of sensory inputs, or ``None`` while unbuilt.
        adjacency_matrix: ``(H, H)`` int32, ``[src, dst]``, values in {-1, 0, +1}.
        sensory_adjacency_matrix: ``(I, H)`` int32, or ``None`` while unbuilt.

    Subclasses implement :meth:`_arguments` (the constructor arguments, JSON-able) and
    :meth:`_generate` (the matrices for a given input size, drawn from a fresh RNG each time).
    """

    registry: ClassVar[dict[str, type[Wiring]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Wiring.registry[cls.__name__] = cls

    def __init__(self, units: int, output_dim: int, input_dim: int | None = None) -> None:
        if int(units) < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        if not 1 <= int(output_dim) <= int(units):
            raise ValueError(f"output_dim must be in [1, units={units}], got {output_dim}")
        if input_dim is not None and int(input_dim) < 1:
            raise ValueError(f"input_dim must be >= 1 or None, got {input_dim}")
        self.units = int(units)
        self.output_dim = int(output_dim)
        self.input_dim: int | None = None if input_dim is None else int(input_dim)
        self.sensory_adjacency_matrix: IntMatrix | None = None
        if self.input_dim is None:
            # NCP internal synapses are drawn after the sensory ones (one RNG stream), so they are
            # only known once built; until then the matrix is all zeros (as in ncps).
            self.adjacency_matrix = _readonly(np.zeros((self.units, self.units), dtype=np.int32))
        else:
            adjacency, sensory = self._generate(self.input_dim)
            self.adjacency_matrix = _readonly(adjacency)
            self.sensory_adjacency_matrix = _readonly(sensory)

    # --- to be provided by subclasses -------------------------------------------------------
    def _arguments(self) -> dict[str, Any]:
        raise NotImplementedError

    def _generate(self, input_dim: int) -> tuple[IntMatrix, IntMatrix]:
        raise NotImplementedError

    # --- building -----------------------------------------------------------------------------
    def is_built(self) -> bool:
        """Whether ``input_dim`` is known and the matrices are drawn."""
        return self.input_dim is not None

    def build(self, input_dim: int) -> Wiring:
        """Return this wiring built for ``input_dim`` sensory inputs.

        Pure: ``self`` is never modified. Returns ``self`` when it is already built for
        ``input_dim``, otherwise a new object with the same arguments and seed.
        """
        if self.input_dim == int(input_dim):
            return self
        return type(self)(**self._arguments(), input_dim=int(input_dim))

    def _require_built(self) -> int:
        if self.input_dim is None:
            raise ValueError(
                f"{type(self).__name__} is not built: call wiring.build(input_dim) "
                "or pass in_features to the cell"
            )
        return self.input_dim

    # --- config -------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Plain-JSON description: ``{"type": ..., <arguments>, "seed"..., "input_dim": ...}``."""
        return {"type": type(self).__name__, **self._arguments(), "input_dim": self.input_dim}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Wiring:
        """Rebuild a wiring from :meth:`get_config` output (also accepts JSON text).

        Called on :class:`Wiring` it dispatches on ``config["type"]``; called on a subclass the type
        must match (or be absent).

        Raises:
            ValueError: unknown type, type mismatch, or unknown/missing arguments.
        """
        if isinstance(config, str):
            config = json.loads(config)
        config = dict(config)
        type_name = config.pop("type", None)
        if cls is Wiring:
            if type_name is None:
                raise ValueError("wiring config has no 'type'")
            target = Wiring.registry.get(str(type_name))
            if target is None:
                raise ValueError(
                    f"unknown wiring type {type_name!r}; known: {sorted(Wiring.registry)}"
                )
        else:
            if type_name is not None and type_name != cls.__name__:
                raise ValueError(f"wiring config has type {type_name!r}, expected {cls.__name__!r}")
            target = cls
        try:
            return target(**config)
        except TypeError as exc:
            raise ValueError(f"bad {target.__name__} config {config}: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Wiring) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.get_config(), sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args}, input_dim={self.input_dim})"

    # --- structure ----------------------------------------------------------------------------
    @property
    def neuron_groups(self) -> dict[str, tuple[int, ...]]:
        """Named neuron groups: ``motor`` [0, M), ``command``, ``inter`` (internal IDs) and
        ``sensory`` (input feature indices [0, I); empty while unbuilt)."""
        m = self.output_dim
        return {
            "motor": tuple(range(m)),
            "command": (),
            "inter": tuple(range(m, self.units)),
            "sensory": tuple(range(self.input_dim or 0)),
        }

    @property
    def num_layers(self) -> int:
        """Layers of neurons (1 unless the wiring is layered, e.g. :class:`NCP` has 3)."""
        return 1

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        """Neuron IDs of one layer, in state order (for a 1-layer wiring: all neurons)."""
        if layer_id != 0:
            raise ValueError(f"unknown layer {layer_id}; {type(self).__name__} has 1 layer")
        return list(range(self.units))

    def get_type_of_neuron(self, neuron_id: int) -> str:
        """``"motor"``, ``"command"`` or ``"inter"`` for an internal neuron ID."""
        for name in ("motor", "command", "inter"):
            if neuron_id in self.neuron_groups[name]:
                return name
        raise ValueError(f"neuron {neuron_id} out of range [0, {self.units})")

    @property
    def synapse_count(self) -> int:
        """Number of internal (neuron to neuron) synapses."""
        return int(np.abs(self.adjacency_matrix).sum())

    @property
    def sensory_synapse_count(self) -> int:
        """Number of sensory (input to neuron) synapses."""
        self._require_built()
        assert self.sensory_adjacency_matrix is not None
        return int(np.abs(self.sensory_adjacency_matrix).sum())

    def erev_initializer(self) -> npt.NDArray[np.int32]:
        """Initial reversal potentials ``(H, H)``: a writable copy of the adjacency matrix."""
        self._require_built()
        return np.array(self.adjacency_matrix, dtype=np.int32, copy=True)

    def sensory_erev_initializer(self) -> npt.NDArray[np.int32]:
        """Initial sensory reversal potentials ``(I, H)``: a copy of the sensory adjacency."""
        self._require_built()
        return np.array(self.sensory_adjacency_matrix, dtype=np.int32, copy=True)


class FullyConnected(Wiring):
    """Every neuron feeds every neuron (optionally not itself) and every input feeds every neuron.

    Polarity per synapse is ``np.random.default_rng(erev_init_seed).choice([-1, 1, 1])`` (about 2/3
    excitatory), drawn internal synapses first (row-major), then sensory, as in ``ncps``.

    Args:
        units: H.
        output_dim: M, defaults to H.
        erev_init_seed: polarity seed (ncps default 1111).
        self_connections: include ``i -> i`` synapses.
        input_dim: build immediately for I inputs.
    """

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        erev_init_seed: int = 1111,
        self_connections: bool = True,
        input_dim: int | None = None,
    ) -> None:
        self.erev_init_seed = int(erev_init_seed)
        self.self_connections = bool(self_connections)
        super().__init__(units, units if output_dim is None else output_dim, input_dim)
        if input_dim is None:
            self.adjacency_matrix = _readonly(
                self._draw_internal(np.random.default_rng(self.erev_init_seed))
            )

    def _arguments(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_dim": self.output_dim,
            "erev_init_seed": self.erev_init_seed,
            "self_connections": self.self_connections,
        }

    def _draw_internal(self, rng: np.random.Generator) -> IntMatrix:
        adjacency = np.zeros((self.units, self.units), dtype=np.int32)
        for src in range(self.units):
            for dst in range(self.units):
                if src == dst and not self.self_connections:
                    continue
                adjacency[src, dst] = rng.choice([-1, 1, 1])
        return adjacency

    def _generate(self, input_dim: int) -> tuple[IntMatrix, IntMatrix]:
        rng = np.random.default_rng(self.erev_init_seed)
        adjacency = self._draw_internal(rng)
        sensory = np.zeros((input_dim, self.units), dtype=np.int32)
        for src in range(input_dim):
            for dst in range(self.units):
                sensory[src, dst] = rng.choice([-1, 1, 1])
        return adjacency, sensory


class Random(Wiring):
    """Random sparse wiring: a fixed number of synapses drawn uniformly without replacement.

    ``round(H*H*(1 - sparsity_level))`` internal synapses from all (src, dst) pairs, then (once
    built) ``round(I*H*(1 - sparsity_level))`` sensory synapses, with
    ``np.random.default_rng(random_seed)`` and polarity ``choice([-1, 1, 1])``, in ncps's order
    (including its second polarity draw per sensory synapse, which changes the stream).

    Args:
        units: H.
        output_dim: M, defaults to H.
        sparsity_level: fraction of absent synapses, in [0, 1).
        random_seed: seed (ncps default 1111).
        input_dim: build immediately for I inputs.

    Raises:
        ValueError: ``sparsity_level`` outside [0, 1).
    """

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        sparsity_level: float = 0.0,
        random_seed: int = 1111,
        input_dim: int | None = None,
    ) -> None:
        if not 0.0 <= float(sparsity_level) < 1.0:
            raise ValueError(f"Random sparsity_level must be in [0, 1), got {sparsity_level}")
        self.sparsity_level = float(sparsity_level)
        self.random_seed = int(random_seed)
        super().__init__(units, units if output_dim is None else output_dim, input_dim)
        if input_dim is None:
            self.adjacency_matrix = _readonly(
                self._draw_internal(np.random.default_rng(self.random_seed))
            )

    def _arguments(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_dim": self.output_dim,
            "sparsity_level": self.sparsity_level,
            "random_seed": self.random_seed,
        }

    def _pairs(self, sources: int) -> npt.NDArray[np.int64]:
        """All (src, dst) pairs, row-major, as ncps lists them."""
        src, dst = np.meshgrid(np.arange(sources), np.arange(self.units), indexing="ij")
        return np.stack([src.ravel(), dst.ravel()], axis=1).astype(np.int64)

    def _count(self, sources: int) -> int:
        return int(np.round(sources * self.units * (1 - self.sparsity_level)))

    def _draw_internal(self, rng: np.random.Generator) -> IntMatrix:
        adjacency = np.zeros((self.units, self.units), dtype=np.int32)
        chosen = rng.choice(self._pairs(self.units), size=self._count(self.units), replace=False)
        for src, dst in chosen:
            adjacency[src, dst] = rng.choice([-1, 1, 1])
        return adjacency

    def _generate(self, input_dim: int) -> tuple[IntMatrix, IntMatrix]:
        rng = np.random.default_rng(self.random_seed)
        adjacency = self._draw_internal(rng)
        sensory = np.zeros((input_dim, self.units), dtype=np.int32)
        chosen = rng.choice(self._pairs(input_dim), size=self._count(input_dim), replace=False)
        for src, dst in chosen:
            rng.choice([-1, 1, 1])  # ncps draws twice and keeps the second
            sensory[src, dst] = rng.choice([-1, 1, 1])
        return adjacency, sensory


class NCP(Wiring):
    """Neural circuit policy wiring: sensory -> inter -> command (recurrent) -> motor.

    Four layers as in Lechner et al. 2020 (Methods, "NCP design"), drawn with
    ``np.random.RandomState(seed)`` in ncps's order: (1) each sensory input picks ``sensory_fanout``
    distinct inter neurons, unreached inter neurons then get ``clip(int(I*fanout/Ni), 1, I)`` random
    inputs; (2) the same from inter to command with ``inter_fanout``; (3)
    ``recurrent_command_synapses`` random command->command pairs (with replacement); (4) each motor
    neuron draws ``motor_fanin`` command neurons, unreached command neurons get
    ``clip(int(M*fanin/C), 1, M)`` motor targets. Polarity is ``choice([-1, 1])`` (50/50).

    The 19-neuron lane-keeping network is ``NCP(12, 6, 1, 6, 4, 6, 6)`` on 32 inputs.

    Raises:
        ValueError: ``motor_fanin > command_neurons``, ``sensory_fanout > inter_neurons``,
            ``inter_fanout > command_neurons`` or a non-positive size.
    """

    def __init__(
        self,
        inter_neurons: int,
        command_neurons: int,
        motor_neurons: int,
        sensory_fanout: int,
        inter_fanout: int,
        recurrent_command_synapses: int,
        motor_fanin: int,
        seed: int = 22222,
        input_dim: int | None = None,
    ) -> None:
        self.num_inter = int(inter_neurons)
        self.num_command = int(command_neurons)
        self.num_motor = int(motor_neurons)
        self.sensory_fanout = int(sensory_fanout)
        self.inter_fanout = int(inter_fanout)
        self.recurrent_command_synapses = int(recurrent_command_synapses)
        self.motor_fanin = int(motor_fanin)
        self.seed = int(seed)
        for name, value in (
            ("inter_neurons", self.num_inter),
            ("command_neurons", self.num_command),
            ("motor_neurons", self.num_motor),
            ("sensory_fanout", self.sensory_fanout),
            ("inter_fanout", self.inter_fanout),
            ("motor_fanin", self.motor_fanin),
        ):
            if value < 1:
                raise ValueError(f"NCP {name} must be >= 1, got {value}")
        if self.recurrent_command_synapses < 0:
            raise ValueError("NCP recurrent_command_synapses must be >= 0")
        if self.motor_fanin > self.num_command:
            raise ValueError(
                f"NCP motor_fanin={self.motor_fanin} exceeds command_neurons={self.num_command}"
            )
        if self.sensory_fanout > self.num_inter:
            raise ValueError(
                f"NCP sensory_fanout={self.sensory_fanout} exceeds inter_neurons={self.num_inter}"
            )
        if self.inter_fanout > self.num_command:
            raise ValueError(
                f"NCP inter_fanout={self.inter_fanout} exceeds command_neurons={self.num_command}"
            )
        super().__init__(
            self.num_inter + self.num_command + self.num_motor, self.num_motor, input_dim
        )

    def _arguments(self) -> dict[str, Any]:
        return {
            "inter_neurons": self.num_inter,
            "command_neurons": self.num_command,
            "motor_neurons": self.num_motor,
            "sensory_fanout": self.sensory_fanout,
            "inter_fanout": self.inter_fanout,
            "recurrent_command_synapses": self.recurrent_command_synapses,
            "motor_fanin": self.motor_fanin,
            "seed": self.seed,
        }

    @property
    def neuron_groups(self) -> dict[str, tuple[int, ...]]:
        m, c = self.num_motor, self.num_command
        return {
            "motor": tuple(range(m)),
            "command": tuple(range(m, m + c)),
            "inter": tuple(range(m + c, self.units)),
            "sensory": tuple(range(self.input_dim or 0)),
        }

    @property
    def num_layers(self) -> int:
        return 3

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        """Layer 0 = inter, 1 = command, 2 = motor (ncps order)."""
        names = ("inter", "command", "motor")
        if not 0 <= layer_id < 3:
            raise ValueError(f"unknown layer {layer_id}")
        return list(self.neuron_groups[names[layer_id]])

    def _generate(self, input_dim: int) -> tuple[IntMatrix, IntMatrix]:
        # The call sequence on ``rng`` mirrors ncps.wirings.NCP.build exactly; changing a call
        # (even to an equivalent one) changes every later draw.
        rng = np.random.RandomState(self.seed)
        h = self.units
        adjacency = np.zeros((h, h), dtype=np.int32)
        sensory = np.zeros((input_dim, h), dtype=np.int32)
        groups = self.neuron_groups
        motor, command, inter = (
            list(groups["motor"]),
            list(groups["command"]),
            list(groups["inter"]),
        )
        inputs = list(range(input_dim))

        def fan(
            targets: IntMatrix,
            sources: Sequence[int],
            dests: list[int],
            fanout: int,
            orphan_pool: list[int],
            orphan_fanin_hi: int,
            orphan_fanin: int,
            src_major: bool,
        ) -> None:
            unreached = list(dests) if src_major else list(sources)
            if src_major:
                for src in sources:
                    for dst in rng.choice(dests, size=fanout, replace=False):
                        if dst in unreached:
                            unreached.remove(dst)
                        targets[src, dst] = rng.choice([-1, 1])
            else:  # motor layer: iterate destinations, draw sources
                for dst in dests:
                    for src in rng.choice(sources, size=fanout, replace=False):
                        if src in unreached:
                            unreached.remove(src)
                        targets[src, dst] = rng.choice([-1, 1])
            count = int(np.clip(orphan_fanin, 1, orphan_fanin_hi))
            for node in unreached:
                for other in rng.choice(orphan_pool, size=count, replace=False):
                    if src_major:
                        targets[other, node] = rng.choice([-1, 1])
                    else:
                        targets[node, other] = rng.choice([-1, 1])

        n_s, n_i, n_c, n_m = input_dim, self.num_inter, self.num_command, self.num_motor
        # 1. sensory -> inter
        fan(
            sensory,
            inputs,
            inter,
            self.sensory_fanout,
            inputs,
            n_s,
            int(n_s * self.sensory_fanout / n_i),
            src_major=True,
        )
        # 2. inter -> command (ncps clips the orphan fan-in to the command count; kept on purpose)
        fan(
            adjacency,
            inter,
            command,
            self.inter_fanout,
            inter,
            n_c,
            int(n_i * self.inter_fanout / n_c),
            src_major=True,
        )
        # 3. recurrent command synapses, with replacement
        for _ in range(self.recurrent_command_synapses):
            src = rng.choice(command)
            dst = rng.choice(command)
            adjacency[src, dst] = rng.choice([-1, 1])
        # 4. command -> motor
        fan(
            adjacency,
            command,
            motor,
            self.motor_fanin,
            motor,
            n_m,
            int(n_m * self.motor_fanin / n_c),
            src_major=False,
        )
        return adjacency, sensory


class AutoNCP(NCP):
    """An :class:`NCP` sized from the total neuron count and a sparsity level (ncps's rule).

    With density d = 1 - ``sparsity_level`` and N = ``units - output_size``: command =
    ``max(int(0.4 N), 1)``, inter = N - command, sensory_fanout = ``max(int(inter d), 1)``,
    inter_fanout = ``max(int(command d), 1)``, recurrent = ``max(int(2 command d), 1)``,
    motor_fanin = ``max(int(command d), 1)``.

    Raises:
        ValueError: ``output_size >= units - 2`` or ``sparsity_level`` outside [0.1, 1.0].
    """

    def __init__(
        self,
        units: int,
        output_size: int,
        sparsity_level: float = 0.5,
        seed: int = 22222,
        input_dim: int | None = None,
    ) -> None:
        if output_size >= units - 2:
            raise ValueError(
                f"AutoNCP output_size must be < units - 2 (got units={units}, "
                f"output_size={output_size})"
            )
        if not 0.1 <= sparsity_level <= 1.0:
            raise ValueError(f"AutoNCP sparsity_level must be in [0.1, 1.0], got {sparsity_level}")
        self.auto_units = int(units)
        self.output_size = int(output_size)
        self.sparsity_level = float(sparsity_level)
        density = 1.0 - sparsity_level
        inter_and_command = units - output_size
        command = max(int(0.4 * inter_and_command), 1)
        inter = inter_and_command - command
        super().__init__(
            inter,
            command,
            output_size,
            max(int(inter * density), 1),
            max(int(command * density), 1),
            max(int(command * density * 2), 1),
            max(int(command * density), 1),
            seed=seed,
            input_dim=input_dim,
        )

    def _arguments(self) -> dict[str, Any]:
        return {
            "units": self.auto_units,
            "output_size": self.output_size,
            "sparsity_level": self.sparsity_level,
            "seed": self.seed,
        }


def wiring_from_config(config: Mapping[str, Any]) -> Wiring:
    """Same as ``Wiring.from_config``: build any registered wiring from its config."""
    return Wiring.from_config(config)


class WiredSizes:
    """Size properties of a cell built on ``self.wiring`` (shared by :class:`LTCCell` and
    :class:`WiredCfCCell`): H, I, M and synapse counts."""

    wiring: Wiring

    @property
    def state_size(self) -> int:
        """H, number of neurons."""
        return self.wiring.units

    @property
    def sensory_size(self) -> int:
        """I, number of inputs."""
        return self.wiring._require_built()

    @property
    def motor_size(self) -> int:
        """M, number of motor neurons (outputs)."""
        return self.wiring.output_dim

    @property
    def output_size(self) -> int:
        return self.motor_size

    @property
    def synapse_count(self) -> int:
        """Internal synapses of the wiring."""
        return self.wiring.synapse_count

    @property
    def sensory_synapse_count(self) -> int:
        """Sensory synapses of the wiring (ncps returns the internal count here; we do not)."""
        return self.wiring.sensory_synapse_count
