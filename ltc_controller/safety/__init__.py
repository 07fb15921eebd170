"""Safety gate: limits, timeouts and the fallback state machine (ROS-free, pure)."""
