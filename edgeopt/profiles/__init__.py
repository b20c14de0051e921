"""Hardware profiles: the typed schema, strict YAML loading, and whether this host *is* a profile's device.

The names are defined in :mod:`edgeopt.profiles.schema` and re-exported here.
"""

from edgeopt.profiles.schema import *  # noqa: F403
from edgeopt.profiles.schema import __all__  # noqa: F401
