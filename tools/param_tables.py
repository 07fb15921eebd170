"""Rewrite the README's parameter tables from the nodes' declarations (``PARAMS``).

Usage: ``python tools/param_tables.py [--check]`` (``--check``: exit 1 if the README is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ltc_controller.nodes import policy_node, safety_node, simulator
from ltc_controller.params import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- PARAMS:BEGIN -->", "<!-- PARAMS:END -->"


def tables() -> str:
    parts = []
    for name, mod in (
        ("ltc_policy", policy_node),
        ("safety_fallback", safety_node),
        ("simulator", simulator),
    ):
        parts.append(f"### {name}\n\n{markdown_table(mod.PARAMS)}\n")
    return "\n".join(parts)


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{tables()}{END}{tail}"


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
