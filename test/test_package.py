"""The repository is a valid ROS 2 package and installs what it names."""

import ast
import configparser
import glob
import os
import subprocess
import sys
from pathlib import Path

import yaml
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]

# pip distribution (setup.cfg) -> rosdep key in package.xml
ROSDEP_KEYS = {
    "torch": "python3-torch-pip",
    "numpy": "python3-numpy-pip",
    "safetensors": "python3-safetensors-pip",
    "cyclonedds": "python3-cyclonedds-pip",
    "rosbags": "python3-rosbags-pip",
    "mujoco": "python3-mujoco-pip",
    "drone-models": "python3-drone-models-pip",
    "pyyaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "pillow": "python3-pil",
    "pytest": "python3-pytest",
    "catkin-pkg": "python3-catkin-pkg",
    "ncps": "python3-ncps-pip",
    "numba": "python3-numba",
    "onnx": "python3-onnx-pip",
    "onnxruntime": "python3-onnxruntime-pip",
    "hypothesis": "python3-hypothesis",
    "opencv-python-headless": "python3-opencv",
    "imageio-ffmpeg": "python3-imageio-ffmpeg-pip",
    "scikit-image": "python3-skimage",
    "tqdm": "python3-tqdm",
    "ray": "python3-ray-pip",
    "optuna": "python3-optuna-pip",
    "rliable": "python3-rliable-pip",
    "arch": "python3-arch-pip",
    "pandas": "python3-pandas-pip",
}
# Keys we define ourselves (rosdep.yaml); the rest are rosdistro's.
STANDARD_KEYS = {
    "python3-yaml",
    "python3-matplotlib",
    "python3-pil",
    "python3-pytest",
    "python3-numba",
    "python3-hypothesis",
    "python3-opencv",
    "python3-skimage",
    "python3-tqdm",
    "python3-catkin-pkg",
}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


# Test tools that package.xml does not name (linters, a pytest plugin).
NO_ROSDEP_KEY = {"pytest-timeout", "ruff", "mypy"}


def _reqs(text: str) -> list[str]:
    return [line.split("==")[0].strip().lower() for line in text.strip().splitlines() if line]


def _pins(text: str) -> dict[str, str]:
    """``dist==version`` lines -> ``{dist: version}`` ('' where a line has no pin); an
    environment marker (``; python_version >= "3.11"``) is not part of the version."""
    out = {}
    for line in text.strip().splitlines():
        dist, _, version = line.partition("==")
        out[dist.strip().lower()] = version.partition(";")[0].strip()
    return out


def _extras() -> dict[str, dict[str, str]]:
    """extra -> {distribution: pinned version}."""
    section = _setup_cfg()["options.extras_require"]
    return {name: _pins(section[name]) for name in section}


def test_package_xml_is_valid_format_3():
    pkg = parse_package(str(ROOT / "package.xml"))
    pkg.validate()  # raises InvalidPackage on any problem
    assert pkg.package_format == 3
    assert pkg.name == "ltc_controller"
    assert pkg.get_build_type() == "ament_cmake"
    import ltc_controller

    assert pkg.version == ltc_controller.__version__


def test_exec_depends_are_the_base_install():
    pkg = parse_package(str(ROOT / "package.xml"))
    python_exec = {d.name for d in pkg.exec_depends if d.name.startswith("python3-")}
    base = _reqs(_setup_cfg()["options"]["install_requires"])
    assert sorted(base) == sorted(
        [
            "torch",
            "numpy",
            "safetensors",
            "cyclonedds",
            "rosbags",
            "pyyaml",
            "pillow",
            "opencv-python-headless",
        ]
    )
    assert python_exec == {ROSDEP_KEYS[d] for d in base}


def test_extras_are_pinned_and_all_is_their_union():
    extras = _extras()
    rooms = {"sim", "train", "explain", "onnx", "numba", "compare"}
    assert set(extras) == rooms | {"all", "test"}
    base = set(_reqs(_setup_cfg()["options"]["install_requires"]))
    union: dict[str, str] = {}
    for name in sorted(rooms):
        for dist, version in extras[name].items():
            assert version, f"[{name}] {dist} is not pinned"
            assert dist not in base, f"[{name}] {dist} is already in the base install"
            assert union.setdefault(dist, version) == version, f"{dist}: two pins"
    assert extras["all"] == union
    assert {"mujoco", "matplotlib", "drone-models"} <= set(extras["sim"])
    assert {"onnx", "onnxruntime"} <= set(extras["onnx"])
    assert "numba" in extras["numba"]


def test_extras_table_names_the_modules_setup_cfg_installs():
    from ltc_controller.extras import EXTRAS

    extras = _extras()
    assert set(EXTRAS) == set(extras) - {"all", "test"}
    for name, modules in EXTRAS.items():
        assert sorted(modules) == sorted(d.replace("-", "_") for d in extras[name]), name


def test_test_depends_are_the_test_extra_and_every_extra():
    pkg = parse_package(str(ROOT / "package.xml"))
    test_keys = {d.name for d in pkg.test_depends}
    extras = _extras()
    test_extra = set(extras["test"]) - NO_ROSDEP_KEY
    assert {
        "pytest",
        "catkin-pkg",
        "ncps",
        "hypothesis",
        "scikit-image",
    } <= test_extra
    assert test_keys == {ROSDEP_KEYS[d] for d in test_extra | set(extras["all"])}


def test_custom_rosdep_keys_are_defined():
    pkg = parse_package(str(ROOT / "package.xml"))
    defined = yaml.safe_load((ROOT / "rosdep.yaml").read_text())
    used = set()
    for dep in pkg.exec_depends + pkg.test_depends:
        if dep.name.startswith("python3-") and dep.name not in STANDARD_KEYS:
            assert dep.name in defined, dep.name
            assert defined[dep.name]["ubuntu"]["pip"]["packages"]
            used.add(dep.name)
    assert set(defined) == used, "rosdep.yaml defines keys package.xml does not use"


def test_rosdep_pip_keys_pin_what_setup_cfg_pins():
    pins = _pins(_setup_cfg()["options"]["install_requires"])
    for section in _extras().values():
        pins.update(section)
    defined = yaml.safe_load((ROOT / "rosdep.yaml").read_text())
    for key, rule in defined.items():
        for os_name in ("debian", "ubuntu"):
            for spec in rule[os_name]["pip"]["packages"]:
                dist, _, version = spec.partition("==")
                assert version == pins[dist.lower()], f"{key} ({os_name}): {spec}"


def test_every_installed_data_file_exists():
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    )
    data_files = next(k.value for k in call.keywords if k.arg == "data_files")
    n = 0
    for entry in data_files.elts:
        dest, files = entry.elts
        if isinstance(files, ast.List):
            paths = [ast.literal_eval(f) for f in files.elts]
        else:  # glob("pattern")
            paths = glob.glob(str(ROOT / ast.literal_eval(files.args[0])))
            assert paths, f"{ast.literal_eval(dest)}: glob matches nothing"
        for p in paths:
            assert (ROOT / p).is_file(), p
            n += 1
    assert n >= 6


def test_package_data_patterns_match_shipped_files():
    patterns = _setup_cfg()["options.package_data"]["ltc_controller"].split(",")
    for pattern in (p.strip() for p in patterns):
        assert glob.glob(str(ROOT / "ltc_controller" / pattern)), pattern


def test_cmake_installs_existing_files():
    text = (ROOT / "CMakeLists.txt").read_text()
    for name in (
        "msg/PolicyStatus.msg",
        "msg/SafetyStatus.msg",
        "scripts/ltc_policy",
        "scripts/safety_fallback",
        "scripts/simulator",
    ):
        assert name in text
        assert (ROOT / name).is_file(), name
    for d in ("launch", "config", "msg"):
        assert (ROOT / d).is_dir()


def test_console_scripts_resolve():
    import importlib

    cfg = _setup_cfg()
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = (s.strip() for s in line.split("="))
        mod, func = target.split(":")
        assert callable(getattr(importlib.import_module(mod), func)), name
    assert {"ltc-controller", "ltc_policy", "safety_fallback"} <= {
        line.split("=")[0].strip()
        for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    }


def test_generated_messages_of_a_colcon_install_are_found_from_a_source_checkout(tmp_path):
    # A colcon install tree holds ltc_controller/msg (rosidl-generated); with the workspace
    # sourced and the source tree first on sys.path, ltc_controller.msg must still import from
    # the install while every other module comes from the source tree.
    gen = tmp_path / "site-packages" / "ltc_controller" / "msg"
    gen.mkdir(parents=True)
    (gen.parent / "__init__.py").write_text("")
    (gen / "__init__.py").write_text("class PolicyStatus:\n    GENERATED = True\n")
    code = (
        "import ltc_controller.msg as m, ltc_controller.params as p; "
        "print(m.PolicyStatus.GENERATED, m.__file__, p.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{gen.parent.parent}"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "True" and out[1].startswith(str(tmp_path))
    assert out[2].startswith(str(ROOT / "ltc_controller"))
