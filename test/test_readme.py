"""The README states what the code does."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_parameter_tables_match_the_declarations():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "param_tables.py"), "--check"])
    assert r.returncode == 0, "README parameter tables are stale: run python tools/param_tables.py"


def test_readme_opens_with_the_two_commands_that_ci_runs():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0].startswith("bash tools/setup.sh && .venv/bin/ltc-controller demo")
    assert block[1].startswith("bash tools/setup.sh && .venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash tools/setup.sh" in ci and ".venv/bin/python -m pytest" in ci
