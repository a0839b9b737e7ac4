"""``mt_specialize.inference`` is ``mt_specialize.learning.inference`` (the same module object), for the ROS-side
modules that import the old path until they move into ``mt_specialize.ros`` (docs/design.md)."""
import sys

from mt_specialize.learning import inference as _module

sys.modules[__name__] = _module
