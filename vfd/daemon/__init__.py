"""The vfd daemon: request server, VF manager, callbacks, logging and the process entry point.

pydantic's plugins are switched off here, before any model class is built: a daemon running as root
must not import whatever third-party code an installed distribution registers as a `pydantic` entry
point, and looking for such entry points reads every installed distribution's metadata at start-up
(a few hundred file operations, seconds on a slow root file system; docs/performance.md).
"""

import os

os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
