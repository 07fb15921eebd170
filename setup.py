"""pip route (no ROS install). The ROS 2 route builds with ament_cmake (CMakeLists.txt)."""

from glob import glob

from setuptools import setup

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/ltc_controller"]),
        ("share/ltc_controller", ["package.xml"]),
        ("share/ltc_controller/launch", glob("launch/*")),
        ("share/ltc_controller/config", glob("config/*.yaml")),
        ("share/ltc_controller/msg", glob("msg/*.msg")),
    ],
)
