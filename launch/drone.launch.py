"""LTC policy + safety fallback with the drone profile (config/drone.yaml): Twist velocity
setpoints, zero velocity (hover) on a fault, optional land request.

    ros2 launch ltc_controller drone.launch.py [namespace:=/uav] [use_sim_time:=true] \
        [params_file:=/path/to/drone.yaml] [autostart:=true]

Same nodes and arguments as ltc_controller.launch.py; only the default parameters file differs.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("ltc_controller")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "drone.yaml"]),
                description="ROS parameters file (drone profile)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="Stamp with /clock time"
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
            DeclareLaunchArgument(
                "autostart", default_value="true", description="ltc_policy starts active"
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    PathJoinSubstitution([share, "launch", "ltc_controller.launch.py"])
                ),
                launch_arguments={
                    name: LaunchConfiguration(name)
                    for name in (
                        "params_file",
                        "namespace",
                        "use_sim_time",
                        "log_level",
                        "autostart",
                    )
                }.items(),
            ),
        ]
    )
