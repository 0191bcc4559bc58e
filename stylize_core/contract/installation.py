"""What install.py leaves beside the plug-in and the plug-in reads back: the config's file name and keys.

The plug-in folder holds the plug-in's own files, a copy of this package (`stylize_core/contract/`,
with the package's `__init__.py`: a sandboxed GIMP sees the plug-in's folder, not the project) and
the config below."""

from __future__ import annotations

CONFIG_NAME = "stylize-config.json"


def make_config(python: str, project: str, version: str, server: str = "") -> dict:
    """The config install.py writes beside the plug-in.

    "python": the engine's interpreter (empty in a sandbox that cannot run it); "project": the
    checkout it runs; "server": the address of the engine server to use (a sandboxed GIMP's, which
    cannot start the engine itself), empty for this computer's own. Optional keys a user may add:
    "worker_idle_timeout" (seconds the local server stays up without work) and "local_transport"
    ("unix" or "loopback")."""
    config = {"python": python, "project": project, "version": version}
    if server:
        config["server"] = server
    return config
