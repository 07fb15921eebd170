"""The closed-loop demo on ROS 2: simulator + ltc_policy + safety_fallback (vehicle profile).

    ros2 launch ltc_controller sim.launch.py [namespace:=/car] [params_file:=/path/to.yaml] \
        [duration:=30.0] [log_file:=/tmp/sim_log.npz] [track_seed:=43] [autostart:=true] \
        [log_level:=info]

The simulator (MuJoCo lane keeping, needs the ``[sim]`` extra) publishes ``camera/image_raw`` and
``odom`` and drives with the safety node's ``ackermann_cmd``; the policy and the safety node are
the ones ltc_controller.launch.py starts, with ``params_file`` (default config/vehicle.yaml).
All three in ``namespace``. ``duration`` (s of simulated driving, 0 = until Ctrl-C): the
simulator stops itself after it and the launch ends with it. ``log_file``: the simulator's run
log (``.npz`` + ``.json`` summary: lateral error, lane departures, latency), written when it
stops; empty = none. ``autostart:=false`` leaves ltc_policy unconfigured for a lifecycle
manager (``ros2 lifecycle set <ns>/ltc_policy configure``, then ``activate``).
"""

from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    common = {
        "package": "ltc_controller",
        "namespace": LaunchConfiguration("namespace"),
        "output": "screen",
    }
    ros_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    simulator = Node(
        executable="simulator",
        name="simulator",
        arguments=["--log", LaunchConfiguration("log_file"), *ros_args],
        parameters=[
            {
                # Typed: `duration:=30` must reach the double parameter as 30.0.
                "duration_s": ParameterValue(LaunchConfiguration("duration"), value_type=float),
                "track_seed": ParameterValue(LaunchConfiguration("track_seed"), value_type=int),
            }
        ],
        **common,
    )
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
                "duration",
                default_value="0.0",
                description="Simulated driving time in s; the launch ends after it (0 = never)",
            ),
            DeclareLaunchArgument(
                "log_file",
                default_value="",
                description="Simulator run log (.npz and .json), written on exit; empty = none",
            ),
            DeclareLaunchArgument("track_seed", default_value="43", description="Track seed"),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="ltc_policy configures and activates itself (false: lifecycle manager)",
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
            # The safety node first: it publishes safe output until the policy is healthy.
            Node(
                executable="safety_fallback",
                name="safety_fallback",
                parameters=[params_file],
                arguments=ros_args,
                **common,
            ),
            Node(
                executable="ltc_policy",
                name="ltc_policy",
                parameters=[
                    params_file,
                    {
                        "autostart": ParameterValue(
                            LaunchConfiguration("autostart"), value_type=bool
                        )
                    },
                ],
                arguments=ros_args,
                **common,
            ),
            simulator,
            # The drive is over when the simulator stops (duration reached, or it failed).
            RegisterEventHandler(
                OnProcessExit(
                    target_action=simulator,
                    on_exit=[EmitEvent(event=Shutdown(reason="simulator stopped"))],
                )
            ),
        ]
    )
