"""The design card's roles are top-level folders installed as ``fedsynth.*``: the mapping holds."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import sysconfig
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


# ------------------------------------------------------------------ installs by role
# What the [simulation] and [report] extras add, by their top-level names in site-packages.
OPTIONAL = ("ray", "datasets", "flwr_datasets", "matplotlib", "mpl_toolkits", "sklearn", "scikit_learn",
            "threadpoolctl")
# Python started without site-packages, then given a copy of them (symlinks) without the extras:
# to every import and find_spec those packages are simply not installed, as after `pip install fedsynth`.
WITHOUT_EXTRAS = """
import runpy, site, sys
site.addsitedir(sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True) if sys.argv[0] != "-c" else exec(sys.argv[1])
"""


@pytest.fixture(scope="module")
def base_site(tmp_path_factory) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    view = tmp_path_factory.mktemp("base") / "site-packages"
    view.mkdir()
    for entry in site.iterdir():
        if entry.name.split("-")[0].split(".")[0].lower() not in OPTIONAL:
            (view / entry.name).symlink_to(entry)
    return view


INSTITUTION_ROUND = """
import sys, numpy as np
from fedsynth.client.app import ClientSettings, Institution
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.tables import load_table, write_table
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.simulations.datasets import bundled_paths
import fedsynth.client.node, fedsynth.server.coordinator  # the two deployed roles
from fedsynth.common.data.schema import Schema
table, schema_path = bundled_paths("adult")
schema = Schema.load(schema_path)
write_table(load_table(table, schema).sample(300, random_state=0), sys.argv[2] + "/silo.csv", schema=schema)
inst = Institution(ClientSettings(sys.argv[2] + "/silo.csv", str(schema_path), sys.argv[2] + "/state", 1.0, 1e-5,
                                  init_ledger=True))
plan = FederationPlan(rounds=2, local_epochs=0.2, model=ModelConfig(hidden=8), schema_hash=schema.hash())
packed, metrics = inst.train_round(build_model(TableEncoder(schema), plan.model).get_arrays(), plan, 1, 2, 8.0)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {optional!r})
print("charged", inst.ledger().epsilon_spent > 0, "loaded", loaded)
"""


def _without_extras(base_site: Path, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-S", "-c", WITHOUT_EXTRAS, str(base_site), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


def test_the_base_install_pulls_no_simulation_or_report_stack_and_pins_no_exact_versions(tmp_path):
    # the installed distribution's metadata, read away from the checkout (a stale fedsynth.egg-info there would shadow it)
    res = subprocess.run([sys.executable, "-c", "import json; from importlib import metadata; "
                          "print(json.dumps(metadata.requires('fedsynth')))"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    requires = json.loads(res.stdout)
    base = [r for r in requires if "extra ==" not in r]
    names = {re.split(r"[\[<>=~;! ]", r, maxsplit=1)[0].lower() for r in base}
    assert {"torch", "opacus", "flwr"} <= names
    assert not names & {"ray", "datasets", "flwr-datasets", "matplotlib", "scikit-learn", "threadpoolctl", "grpcio"}
    assert not any("simulation" in r for r in base)  # flwr itself, without its [simulation] (Ray) extra
    assert not [r for r in requires if "==" in r.split(";")[0]]  # exact pins live in docker/constraints.txt


def test_an_institution_trains_and_is_charged_without_any_extra(tmp_path, base_site):
    res = _without_extras(base_site, "-c", INSTITUTION_ROUND.replace("{optional!r}", repr(set(OPTIONAL))),
                          str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "charged True loaded []" in res.stdout
    help_ = _without_extras(base_site, "fedsynth.cli", "client", "--help")
    assert help_.returncode == 0 and "--budget-epsilon" in help_.stdout, help_.stderr[-2000:]


@pytest.mark.parametrize(("command", "extras"), [
    (["simulate", "--out", "run"], "simulation,report"),
    (["evaluate", "--real", "a.csv", "--holdout", "b.csv", "--synthetic", "c.csv", "--schema", "s.json", "--out", "r"],
     "report"),
])
def test_commands_that_need_an_extra_name_it_before_any_work(tmp_path, base_site, command, extras):
    res = _without_extras(base_site, "fedsynth.cli", *command, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert f"pip install 'fedsynth[{extras}]'" in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_installed_requirements_are_consistent():
    res = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
