"""``mt_specialize.robots`` is ``mt_specialize.envs.robots`` (the same module object), for the ROS-side
modules that import the old path until they move into ``mt_specialize.ros`` (docs/design.md)."""
import sys

from mt_specialize.envs import robots as _module

sys.modules[__name__] = _module
