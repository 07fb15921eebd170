"""``ltc-controller estop status`` wording, on the gate's real states and a real SafetyStatus."""

from __future__ import annotations

from dataclasses import replace

from ltc_controller.commands.estop import status_line
from ltc_controller.nodes.safety_node import fault_name
from ltc_controller.safety.gate import GateConfig, GateInputs, initial_state, tick
from ltc_controller.transport.types import new_msg


def _status(st: object) -> object:
    return new_msg(
        "ltc_controller/msg/SafetyStatus",
        state_name=st.state.name,  # type: ignore[attr-defined]
        active_fault=fault_name(st.active_fault),  # type: ignore[attr-defined]
        estop_asserted=False,
        resets_refused=st.resets_refused,  # type: ignore[attr-defined]
    )


def test_status_after_an_accepted_reset_says_the_reset_was_accepted() -> None:
    cfg = GateConfig()
    st = initial_state(cfg, estop_latched=True)
    latched = status_line("/safety_fallback", _status(st))
    assert "state ESTOP" in latched and latched.endswith("active fault estop, resets refused 0")
    st, _ = tick(cfg, st, replace(GateInputs(heartbeats=0), reset_requested=True), 0.0)
    line = status_line("/safety_fallback", _status(st))
    assert "state FALLBACK" in line and "estop (reset accepted;" in line
