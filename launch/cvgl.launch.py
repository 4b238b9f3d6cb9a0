"""Launch the cvgl_ros localization node with a parameter file.

Arguments: ``config`` (parameter YAML), ``namespace``, ``use_sim_time``, and the remaps
``image_topic``, ``camera_info_topic``, ``fix_topic``, ``imu_topic`` of the node's fixed input
names ``camera/image_raw``, ``camera/camera_info``, ``gnss/fix``, ``imu/data`` (input topics
are not parameters).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Node ``cvgl_node`` from package ``cvgl_ros`` with its parameters and remaps."""
    default_config = PathJoinSubstitution([FindPackageShare("cvgl_ros"), "config", "default.yaml"])
    args = [
        DeclareLaunchArgument(
            "config", default_value=default_config, description="parameter YAML for cvgl_node"
        ),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (bag replay)"
        ),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info"),
        DeclareLaunchArgument("fix_topic", default_value="gnss/fix"),
        DeclareLaunchArgument("imu_topic", default_value="imu/data"),
    ]
    node = Node(
        package="cvgl_ros",
        executable="cvgl_node",
        name="cvgl_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {"use_sim_time": LaunchConfiguration("use_sim_time")},
        ],
        remappings=[
            ("camera/image_raw", LaunchConfiguration("image_topic")),
            ("camera/camera_info", LaunchConfiguration("camera_info_topic")),
            ("gnss/fix", LaunchConfiguration("fix_topic")),
            ("imu/data", LaunchConfiguration("imu_topic")),
        ],
    )
    return LaunchDescription([*args, node])
