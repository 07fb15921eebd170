"""LTC policy + safety fallback driving a vehicle in Gazebo (gz sim), on simulation time.

    ros2 launch ltc_controller gazebo.launch.py [camera_topic:=/camera] \
        [cmd_topic:=/model/vehicle/cmd_vel] [namespace:=] [params_file:=...]

Start the world separately (e.g. ``ros2 launch ros_gz_sim gz_sim.launch.py gz_args:=world.sdf``).
``ros_gz_bridge``'s parameter_bridge carries, with ``[`` = Gazebo to ROS and ``]`` = ROS to Gazebo:

- ``/clock``  rosgraph_msgs/msg/Clock  [  gz.msgs.Clock   (all nodes use_sim_time:=true)
- camera      sensor_msgs/msg/Image    [  gz.msgs.Image   -> <namespace>/camera/image_raw
- command     geometry_msgs/msg/Twist  ]  gz.msgs.Twist   <- <namespace>/cmd_vel

The vehicle takes Twist commands (Gazebo's Ackermann and diff-drive systems do), so both nodes
run with ``command_type: geometry_msgs/msg/Twist``; steering becomes a yaw rate through the
policy's bicycle mapping. The bridge needs ``ros_gz_bridge`` and the world ``ros_gz_sim``
(exec_depends of the package; ``rosdep install`` or ``sudo apt install ros-$ROS_DISTRO-ros-gz``);
without them the launch stops with a one-line message naming them.
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

TWIST = "geometry_msgs/msg/Twist"


def generate_launch_description() -> LaunchDescription:
    for package in ("ros_gz_bridge", "ros_gz_sim"):
        try:
            get_package_share_directory(package)
        except PackageNotFoundError:
            raise RuntimeError(
                f"gazebo.launch.py needs {package} (Gazebo's ROS bridge): "
                "sudo apt install ros-$ROS_DISTRO-ros-gz, or rosdep install --from-paths src -y"
            ) from None
    camera_topic = LaunchConfiguration("camera_topic")
    cmd_topic = LaunchConfiguration("cmd_topic")
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    sim = {"use_sim_time": True}
    nodes = {"package": "ltc_controller", "namespace": namespace, "output": "screen"}
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "camera_topic", default_value="/camera", description="Gazebo camera image topic"
            ),
            DeclareLaunchArgument(
                "cmd_topic",
                default_value="/model/vehicle/cmd_vel",
                description="Gazebo topic of the vehicle's Twist command",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("ltc_controller"), "config", "vehicle.yaml"]
                ),
                description="ROS parameters file for ltc_policy and safety_fallback",
            ),
            Node(
                package="ros_gz_bridge",
                executable="parameter_bridge",
                name="ltc_gz_bridge",
                namespace=namespace,
                output="screen",
                arguments=[
                    "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock",
                    [camera_topic, "@sensor_msgs/msg/Image[gz.msgs.Image"],
                    [cmd_topic, "@geometry_msgs/msg/Twist]gz.msgs.Twist"],
                ],
                remappings=[(camera_topic, "camera/image_raw"), (cmd_topic, "cmd_vel")],
                parameters=[sim],
            ),
            Node(
                executable="safety_fallback",
                name="safety_fallback",
                parameters=[params_file, {**sim, "command_type": TWIST}],
                **nodes,
            ),
            Node(
                executable="ltc_policy",
                name="ltc_policy",
                parameters=[params_file, {**sim, "command_type": TWIST}],
                **nodes,
            ),
        ]
    )
