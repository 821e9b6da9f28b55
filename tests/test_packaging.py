"""The design card's roles are top-level folders installed as ``fedsynth.*``: the mapping holds."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _package_folders() -> dict[str, Path]:
    """Every folder under a mapped role that holds Python modules, by its dotted package name."""
    found = {}
    for package, folder in SETUPTOOLS["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found[".".join([package, *rel.parts])] = init.parent
    return found


def test_every_package_folder_is_listed_for_the_wheel():
    missing = sorted(set(_package_folders()) - set(SETUPTOOLS["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.parametrize("role", ["client", "server", "common", "simulations", "evaluation"])
def test_each_role_folder_is_imported_as_fedsynth_role(role):
    module = importlib.import_module(f"fedsynth.{role}")
    assert Path(module.__file__).resolve().parent == REPO / role
