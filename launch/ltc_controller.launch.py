"""Policy + safety node with a parameter file (ROS 2 route: `ros2 launch ltc_controller
ltc_controller.launch.py [params_file:=...] [namespace:=...] [use_sim_time:=true]`)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("ltc_controller")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    common = {"package": "ltc_controller", "namespace": namespace, "output": "screen"}
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "vehicle.yaml")
            ),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument("use_sim_time", default_value="false"),
            Node(
                executable="safety_fallback",
                name="safety_fallback",
                parameters=[params_file, {"use_sim_time": use_sim_time}],
                **common,
            ),
            Node(
                executable="ltc_policy",
                name="ltc_policy",
                parameters=[params_file, {"use_sim_time": use_sim_time}],
                **common,
            ),
        ]
    )
