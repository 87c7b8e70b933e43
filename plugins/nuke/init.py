# MatteBridge for Nuke: plugin paths only (Nuke runs this at start-up, before menu.py, also on the farm).
#
# This folder is on NUKE_PATH (or copied into ~/.nuke), so the `mattebridge_nuke` package next to this file
# is importable. The `mattebridge` client it talks through (with numpy and pyzmq, built for Nuke's Python)
# is found on $MATTEBRIDGE_PYTHONPATH, or in a `site-packages` folder next to this file (docs/nuke.md).
import os
import sys

import nuke


def _plugin_dir():
    here = globals().get("__file__")
    if here:
        return os.path.dirname(os.path.abspath(here))
    for path in nuke.pluginPath():  # some Nuke versions run init.py without __file__
        if os.path.isdir(os.path.join(path, "mattebridge_nuke")):
            return path
    return None


def _add_paths():
    folder = _plugin_dir()
    extra = [p for p in os.environ.get("MATTEBRIDGE_PYTHONPATH", "").split(os.pathsep) if p]
    if folder:
        extra.append(os.path.join(folder, "site-packages"))
    for path in extra:
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)


_add_paths()
