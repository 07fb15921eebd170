"""ltc_controller: liquid time-constant (LTC) neural policies as real-time ROS 2 controllers."""

from pkgutil import extend_path

__version__ = "0.1.0"

# In a sourced colcon workspace the generated message modules (ltc_controller.msg, .srv) live in
# the install tree; a source checkout first on sys.path (pytest from the repository root) would
# hide them. Modules this directory lacks are looked up in the other ltc_controller directories
# on sys.path; this directory stays first.
__path__ = extend_path(__path__, __name__)
