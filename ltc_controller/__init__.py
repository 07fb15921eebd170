"""ltc_controller: liquid time-constant (LTC) neural policies as real-time ROS 2 controllers."""

__version__ = "0.1.0"
