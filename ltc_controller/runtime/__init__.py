"""Deadline-aware fixed-step runtime and preprocessing (ROS-free)."""
