"""The ROS 2 launch files name only things that exist: executables installed by CMakeLists.txt
(or of a known external package), parameter files in config/ whose sections the nodes accept,
parameters the nodes declare, launch arguments they declare, and ros_gz_bridge type pairs that
Gazebo and ROS both know. Where ROS 2's ``launch`` imports, each description is also built."""

from __future__ import annotations

import ast
import configparser
import importlib
import importlib.util
import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from ltc_controller.params import ParamSpec, resolve
from ltc_controller.transport import types as T
from ltc_controller.transport.ros_args import load_params_file

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
#: executable -> module whose PARAMS it declares
NODE_PARAMS = {
    "ltc_policy": "ltc_controller.nodes.policy_node",
    "safety_fallback": "ltc_controller.nodes.safety_node",
    "simulator": "ltc_controller.nodes.simulator",
}
#: ROS executables whose pip-route equivalent is ``ltc-controller node KIND`` rather than a
#: console script of their own (a global ``simulator`` command would be too generic a name).
NODE_ONLY = {"simulator"}
#: executables of other packages the launch files may start (not dependencies of this package)
EXTERNAL = {("ros_gz_bridge", "parameter_bridge")}
#: ros_gz_bridge pairs: ROS type -> (Gazebo type, direction: "[" gz->ROS, "]" ROS->gz)
GZ_BRIDGE = {
    "rosgraph_msgs/msg/Clock": ("gz.msgs.Clock", "["),
    "sensor_msgs/msg/Image": ("gz.msgs.Image", "["),
    "geometry_msgs/msg/Twist": ("gz.msgs.Twist", "]"),
}
_BRIDGE_SPEC = re.compile(r"^(?P<topic>[^@]*)@(?P<ros>[\w/]+)(?P<dir>[\[\]@])(?P<gz>[\w.]+)$")


def _specs(executable: str) -> tuple[ParamSpec, ...]:
    return tuple(importlib.import_module(NODE_PARAMS[executable]).PARAMS)


class LaunchFile:
    """What one launch file names, read from its syntax tree (no ROS needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), str(path))
        compile(self.tree, str(path), "exec")
        self.constants = {
            t.id: n.value.value
            for n in self.tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        # Dict literals assigned to names inside functions (common node kwargs, parameter dicts).
        self.dicts: dict[str, ast.Dict] = {
            t.id: n.value
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
            for t in n.targets
            if isinstance(t, ast.Name)
        }

    def calls(self, name: str) -> list[ast.Call]:
        return [
            n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name
        ]

    def literal(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        return None  # a substitution, resolved at launch time

    def keywords(self, call: ast.Call) -> dict[str, ast.AST]:
        out: dict[str, ast.AST] = {}
        for kw in call.keywords:
            if kw.arg is not None:
                out[kw.arg] = kw.value
            elif isinstance(kw.value, ast.Name) and kw.value.id in self.dicts:
                d = self.dicts[kw.value.id]
                for k, v in zip(d.keys, d.values, strict=True):
                    if isinstance(k, ast.Constant):
                        out.setdefault(k.value, v)
        return out

    def dict_items(self, d: ast.Dict) -> dict[str, ast.AST]:
        out: dict[str, ast.AST] = {}
        for k, v in zip(d.keys, d.values, strict=True):
            if k is None and isinstance(v, ast.Name) and v.id in self.dicts:
                out.update(self.dict_items(self.dicts[v.id]))
            elif isinstance(k, ast.Constant):
                out[k.value] = v
        return out

    def parameter_dicts(self, params: ast.AST) -> list[dict[str, ast.AST]]:
        """The dicts (literal or named) in a ``parameters=[...]`` list; files are skipped."""
        if not isinstance(params, ast.List):
            return []
        out = []
        for item in params.elts:
            if isinstance(item, ast.Name) and item.id in self.dicts:
                item = self.dicts[item.id]
            if isinstance(item, ast.Dict):
                out.append(self.dict_items(item))
        return out

    def strings(self) -> list[str]:
        return [
            n.value
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]


def _console_scripts() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=")[0].strip() for line in lines}


def _cmake_programs() -> set[str]:
    text = (ROOT / "CMakeLists.txt").read_text()
    block = re.search(r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}", text, re.S)
    assert block, "CMakeLists.txt installs no programs to lib/ltc_controller"
    return {Path(p).name for p in block.group(1).split()}


@pytest.fixture(params=LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def lf(request: pytest.FixtureRequest) -> LaunchFile:
    return LaunchFile(request.param)


def test_the_launch_files_exist() -> None:
    assert [p.name for p in LAUNCH_FILES] == [
        "drone.launch.py",
        "gazebo.launch.py",
        "ltc_controller.launch.py",
        "sim.launch.py",
    ]


def test_every_executable_is_installed_or_a_known_external(lf: LaunchFile) -> None:
    ours = _cmake_programs()
    assert ours - NODE_ONLY <= _console_scripts()  # the pip route has the same executables
    from ltc_controller.nodes.registry import NODE_KINDS

    assert NODE_ONLY <= set(NODE_KINDS)  # ... or runs them as `ltc-controller node KIND`
    for call in lf.calls("Node"):
        kw = lf.keywords(call)
        package, exe = lf.literal(kw["package"]), lf.literal(kw["executable"])
        if package == "ltc_controller":
            assert exe in ours, f"{lf.path.name}: {exe} is not installed to lib/ltc_controller"
            assert (ROOT / "scripts" / exe).is_file(), exe
        else:
            assert (package, exe) in EXTERNAL, f"{lf.path.name}: unknown {package}/{exe}"


def test_every_named_file_exists(lf: LaunchFile) -> None:
    named = [s for s in lf.strings() if s.endswith((".yaml", ".launch.py"))]
    for name in named:
        where = ROOT / ("config" if name.endswith(".yaml") else "launch") / name
        assert where.is_file(), f"{lf.path.name} names {name}, which is missing at {where}"
    if lf.path.name != "drone.launch.py":
        return
    assert "drone.yaml" in named


def test_node_parameters_are_declared_with_valid_values(lf: LaunchFile) -> None:
    for call in lf.calls("Node"):
        kw = lf.keywords(call)
        exe = lf.literal(kw["executable"])
        for values in lf.parameter_dicts(kw.get("parameters", ast.List(elts=[]))):
            if exe not in NODE_PARAMS:
                assert set(values) <= {"use_sim_time"}, (exe, sorted(values))
                continue
            specs = {s.name: s for s in _specs(exe)}
            for name, node in values.items():
                assert name in specs, f"{lf.path.name}: {exe} declares no parameter {name!r}"
                value = lf.literal(_typed_value(node))
                if value is not None:
                    specs[name].coerce(value)  # raises ParameterError for a bad value


def _typed_value(node: ast.AST) -> ast.AST:
    """``ParameterValue(x, value_type=...)`` -> ``x``: the value a launch file typed."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ParameterValue":
        return node.args[0]
    return node


def test_sim_launch_types_its_substituted_numbers_and_ends_with_the_simulator() -> None:
    lf = LaunchFile(ROOT / "launch" / "sim.launch.py")
    types = {
        lf.literal(c.args[0].args[0]): next(k.value.id for k in c.keywords if k.arg == "value_type")
        for c in lf.calls("ParameterValue")
    }
    assert types == {"duration": "float", "track_seed": "int", "autostart": "bool"}
    exes = [lf.literal(lf.keywords(c)["executable"]) for c in lf.calls("Node")]
    assert sorted(exes) == ["ltc_policy", "safety_fallback", "simulator"]
    assert lf.calls("OnProcessExit") and lf.calls("Shutdown")
    sim = next(
        c for c in lf.calls("Node") if lf.literal(lf.keywords(c)["executable"]) == "simulator"
    )
    args = lf.keywords(sim)["arguments"]
    assert isinstance(args, ast.List) and lf.literal(args.elts[0]) == "--log"


def test_every_launch_configuration_is_declared(lf: LaunchFile) -> None:
    declared = {lf.literal(c.args[0]) for c in lf.calls("DeclareLaunchArgument")}
    used = {lf.literal(c.args[0]) for c in lf.calls("LaunchConfiguration") if c.args}
    used.discard(None)  # names from a loop (drone.launch.py passes its own arguments on)
    assert used <= declared, f"{lf.path.name}: undeclared {sorted(used - declared)}"
    assert {"namespace", "params_file"} <= declared


@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_files_give_each_node_only_declared_valid_parameters(config: Path) -> None:
    for exe in NODE_PARAMS:
        given = load_params_file(config, f"/{exe}")
        resolve(_specs(exe), given)  # ParameterError names an unknown or invalid parameter


def test_gazebo_bridge_pairs_and_sim_time() -> None:
    lf = LaunchFile(ROOT / "launch" / "gazebo.launch.py")
    pairs = {}
    for s in lf.strings():
        m = _BRIDGE_SPEC.match(s)
        if m:
            pairs[m["ros"]] = (m["gz"], m["dir"], m["topic"])
    assert set(pairs) == set(GZ_BRIDGE)
    for ros, (gz, direction, _topic) in pairs.items():
        assert (gz, direction) == GZ_BRIDGE[ros], ros
        T.idl_class(ros)  # a ROS type the package knows
    assert pairs["rosgraph_msgs/msg/Clock"][2] == "/clock"
    for call in lf.calls("Node"):
        dicts = lf.parameter_dicts(lf.keywords(call)["parameters"])
        assert any(lf.literal(d.get("use_sim_time", ast.Constant(None))) is True for d in dicts)


def _ament_has(*packages: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        for p in packages:
            get_package_share_directory(p)
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    importlib.util.find_spec("launch_ros") is None,
    reason="ROS 2 launch/launch_ros do not import here (no sourced ROS 2 install)",
)
def test_launch_descriptions_build_where_launch_imports(lf: LaunchFile) -> None:
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchDescription

    generate = runpy.run_path(str(lf.path))["generate_launch_description"]
    if lf.path.name == "gazebo.launch.py" and not _ament_has("ros_gz_bridge", "ros_gz_sim"):
        with pytest.raises(RuntimeError, match="needs ros_gz_"):
            generate()  # one line saying what to install, not a bridge that fails to start
        return
    desc = generate()
    assert isinstance(desc, LaunchDescription)
    names = {e.name for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    assert {"namespace", "params_file"} <= names
