"""cvgl_node with robot_localization: EKFs fusing its ``~/pose``, navsat_transform on ``~/fix``.

Starts ``launch/cvgl.launch.py`` (cvgl_node, no namespace) and, from package
``robot_localization`` (``apt install ros-$ROS_DISTRO-robot-localization``), the two EKFs and
navsat_transform configured in ``config/robot_localization_ekf.yaml``. Arguments: ``config``
(cvgl_node parameters), ``rl_config`` (robot_localization parameters), ``use_sim_time``, and
cvgl_node's input topics as in ``cvgl.launch.py``. Wheel odometry and IMU topics are set in
``rl_config``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """cvgl_node + ekf_filter_node_odom + ekf_filter_node_map + navsat_transform."""
    share = FindPackageShare("cvgl_ros")
    args = [
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution([share, "config", "default.yaml"]),
            description="parameter YAML for cvgl_node",
        ),
        DeclareLaunchArgument(
            "rl_config",
            default_value=PathJoinSubstitution([share, "config", "robot_localization_ekf.yaml"]),
            description="parameter YAML for the robot_localization nodes",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info"),
        DeclareLaunchArgument("fix_topic", default_value="gnss/fix"),
        DeclareLaunchArgument("imu_topic", default_value="imu/data"),
    ]
    cvgl = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "cvgl.launch.py"])),
        launch_arguments={
            name: LaunchConfiguration(name)
            for name in (
                "config",
                "use_sim_time",
                "image_topic",
                "camera_info_topic",
                "fix_topic",
                "imu_topic",
            )
        }.items(),
    )
    parameters = [
        LaunchConfiguration("rl_config"),
        {"use_sim_time": LaunchConfiguration("use_sim_time")},
    ]
    ekf_odom = Node(
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_odom",
        output="screen",
        parameters=parameters,
        remappings=[("odometry/filtered", "odometry/local")],
    )
    ekf_map = Node(
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_map",
        output="screen",
        parameters=parameters,
        remappings=[("odometry/filtered", "odometry/global")],
    )
    navsat = Node(
        package="robot_localization",
        executable="navsat_transform_node",
        name="navsat_transform",
        output="screen",
        parameters=parameters,
        remappings=[
            ("gps/fix", "/cvgl_node/fix"),
            ("odometry/filtered", "odometry/global"),
            ("imu", "/imu/data"),
        ],
    )
    return LaunchDescription([*args, cvgl, ekf_odom, ekf_map, navsat])
