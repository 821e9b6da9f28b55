"""What "the fedsynth app" is on the wire, for the coordinator that submits it and the
institutions that refuse anything else.

A Flower run names an app bundle (FAB). fedsynth's bundle carries no code: only a
``pyproject.toml`` naming the components that every party already has installed with
fedsynth, Flower's ``.info/CONTENT`` index and, when ``flwr run`` builds it from the
repository, its README. An institution never installs or imports a
bundle (see :mod:`fedsynth.client.installed_app`); it checks the bundle's identity so that
a foreign run is refused by name instead of being answered.
"""

from __future__ import annotations

import io
import logging
import sys
import tomllib
import warnings
import zipfile

from flwr.common.logger import update_console_handler

from fedsynth.common.version import __version__

APP_PUBLISHER = "fedsynth"
APP_NAME = "fedsynth"  # the [project] name of the repository's pyproject, so `flwr run .` builds this app
APP_ID = f"{APP_PUBLISHER}/{APP_NAME}"
COMPONENTS = {"serverapp": "fedsynth.server.app:app", "clientapp": "fedsynth.client.supernode_app:app"}
BUNDLE_FILES = frozenset({"pyproject.toml", ".info/CONTENT", "README.md"})


def app_version() -> str:
    """The bundle's version is the fedsynth version of the party that built it."""
    return __version__


def foreign_app_reason(fab_id: str, fab_version: str, fab_content: bytes) -> str | None:
    """Why a bundle is not this installation's fedsynth app, or None when it is."""
    if fab_id != APP_ID:
        return f"app {fab_id!r} is not {APP_ID!r}"
    if fab_version != app_version():
        return f"app {fab_id} {fab_version} does not match the fedsynth {app_version()} installed here"
    try:
        with zipfile.ZipFile(io.BytesIO(fab_content)) as bundle:
            extra = sorted(set(bundle.namelist()) - BUNDLE_FILES)
            if extra:
                return f"the bundle carries files {extra[:5]}; fedsynth's bundle carries no code"
            project = tomllib.loads(bundle.read("pyproject.toml").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"the bundle is not a readable Flower app ({type(exc).__name__})"
    components = project.get("tool", {}).get("flwr", {}).get("app", {}).get("components")
    if components != COMPONENTS:
        return f"its components {components!r} are not fedsynth's {COMPONENTS!r}"
    return None


def quiet_logs() -> None:
    """SecAgg+ logs every stage at DEBUG and Opacus warns about its own hooks: keep INFO.
    Colour codes only on a terminal: in a log file they are noise."""
    logging.getLogger("flwr").setLevel(logging.INFO)
    update_console_handler(colored=sys.stderr.isatty())
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="Using a non-full backward hook")
