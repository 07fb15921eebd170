"""LTC policy + safety fallback (ROS 2 route).

    ros2 launch ltc_controller ltc_controller.launch.py \
        [params_file:=/path/to.yaml] [namespace:=/car] [use_sim_time:=true] [log_level:=info] \
        [autostart:=true]

params_file is a ROS parameters file with ``ltc_policy:`` and ``safety_fallback:`` sections
(default: the package's config/vehicle.yaml). The policy publishes ``policy_cmd`` and
``policy_heartbeat``; the safety node, the only one that drives the actuators, publishes the final
command (``ackermann_cmd`` or ``cmd_vel``, after ``command_type``). Both in ``namespace``.
``ltc_policy`` is a lifecycle node: ``autostart:=false`` leaves it unconfigured for a lifecycle
manager (or ``ros2 lifecycle set <namespace>/ltc_policy configure``, then ``activate``).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    common = {
        "package": "ltc_controller",
        "namespace": LaunchConfiguration("namespace"),
        "output": "screen",
        "arguments": ["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    }
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("ltc_controller"), "config", "vehicle.yaml"]
                ),
                description="ROS parameters file for ltc_policy and safety_fallback",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="Stamp with /clock time"
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="ltc_policy configures and activates itself (false: lifecycle manager)",
            ),
            # The safety node first: it publishes safe output until the policy is healthy.
            Node(
                executable="safety_fallback",
                name="safety_fallback",
                parameters=[params_file, {"use_sim_time": use_sim_time}],
                **common,
            ),
            Node(
                executable="ltc_policy",
                name="ltc_policy",
                parameters=[
                    params_file,
                    {
                        "use_sim_time": use_sim_time,
                        "autostart": ParameterValue(
                            LaunchConfiguration("autostart"), value_type=bool
                        ),
                    },
                ],
                **common,
            ),
        ]
    )
