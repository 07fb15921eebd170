"""Transports behind one small port: a Cyclone DDS backend that speaks ROS 2's wire conventions
(no ROS install needed) and, where rclpy imports, an rclpy backend."""
