"""The installed fedsynth version, recorded in every artifact: models, tables, run folders, app bundles.

Read from the installed package's metadata (pyproject.toml is its one source), so that
``common`` never imports the package root above it.
"""

from importlib.metadata import version

__version__ = version("fedsynth")
