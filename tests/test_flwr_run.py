"""The Flower route: `flwr run . <connection>` from the repository against a user's own SuperLink.

A Flower user starts `flower-superlink` (TLS, SuperNode authentication), registers the
institutions' keys with `flwr supernode register`, the institutions start `fedsynth client`,
and the user submits the repository's app with `flwr run`, naming the coordinator's federation
config in the run config. The ServerApp resolves the plan itself; the run ends with a
synthesizer and a model card, as with `fedsynth coordinator`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from fedsynth.common.deploy.addresses import free_loopback_port
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.flower_app import APP_ID, COMPONENTS, app_version, foreign_app_reason
from fedsynth.server.deployment_config import settings_for_run
from fedsynth.server.run_config import RUN_CONFIG_DEFAULTS, write_app_project, write_flwr_config
from test_deployment import ENV, EXAMPLE_CONFIG, REPO, Processes, run_cli

CONNECTION = "mylink"
BIN = Path(sys.executable).parent
FLOWER_ENV = {**ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the SuperLink starts flower-superexec


def flwr(args: list[str], home: Path, timeout: float = 120) -> dict:
    res = subprocess.run([str(BIN / "flwr"), *args, "--format", "json"], env={**FLOWER_ENV, "FLWR_HOME": str(home)},
                         capture_output=True, text=True, timeout=timeout, cwd=home)
    text = res.stdout
    payload = json.loads(text[text.index("{"):]) if "{" in text else {}  # the JSON follows any log lines
    assert payload.get("success"), res.stdout[-3000:] + res.stderr[-3000:]
    return payload


def test_the_repositorys_app_is_the_app_the_coordinator_submits(tmp_path):
    """One app: pyproject's [tool.flwr.app] is what `fedsynth coordinator` writes, and the bundle
    `flwr build` makes of the repository is one every institution accepts (no code in it)."""
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())
    written = tomllib.loads((write_app_project(tmp_path / "app") / "pyproject.toml").read_text())
    for project in (ours, written):
        app = project["tool"]["flwr"]["app"]
        assert f"{app['publisher']}/{project['project']['name']}" == APP_ID
        assert project["project"]["version"] == app_version()
        assert app["components"] == COMPONENTS and app["config"] == RUN_CONFIG_DEFAULTS
    res = subprocess.run([str(BIN / "flwr"), "build", "--app", str(REPO)], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    (fab,) = tmp_path.glob("*.fab")
    with zipfile.ZipFile(fab) as bundle:
        assert not [n for n in bundle.namelist() if n.endswith(".py")]
    assert foreign_app_reason(APP_ID, app_version(), fab.read_bytes()) is None


def test_a_run_config_names_the_federation_config_with_absolute_paths(tmp_path):
    schema = REPO / "fedsynth" / "data" / "adult.schema.json"
    base = {**RUN_CONFIG_DEFAULTS, "federation-config": str(EXAMPLE_CONFIG), "schema": str(schema),
            "out-dir": str(tmp_path / "run"), "clients": 3}
    s = settings_for_run(base)
    assert s.plan.rounds == 2 and s.clients == 3 and s.out_dir == str(tmp_path / "run")
    assert s.plan.schema_hash and (tmp_path / "run").is_dir()
    with pytest.raises(FedsynthError, match="federation-config"):
        settings_for_run(dict(RUN_CONFIG_DEFAULTS))
    with pytest.raises(FedsynthError, match="absolute path"):
        settings_for_run({**base, "out-dir": "run"})
    with pytest.raises(FedsynthError, match="clients = 0"):
        settings_for_run({**base, "clients": 0, "out-dir": str(tmp_path / "run2")})


@pytest.fixture(scope="module")
def flower_route(tmp_path_factory):
    root = tmp_path_factory.mktemp("flwr-run")
    for args in (["split", "--out", "silos", "--clients", "2", "--rows-per-silo", "300"],
                 ["certs", "--out", "certs"], ["keys", "--out", "keys", "--name", "a", "--name", "b"]):
        res = run_cli(args, root)
        assert res.returncode == 0, res.stderr + res.stdout
    home = root / "flwr-home"
    procs = Processes(root)
    try:
        port = free_loopback_port()
        log = open(root / "superlink.log", "wb")  # noqa: SIM115
        superlink = subprocess.Popen(
            [str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
             "--ssl-ca-certfile", "certs/ca.pem", "--ssl-certfile", "certs/server.pem",
             "--ssl-keyfile", "certs/server.key", "--enable-supernode-auth",
             "--disable-runtime-dependency-installation", "--database", str(root / "state.db")],
            cwd=root, env={**FLOWER_ENV, "FLWR_HOME": str(root / "superlink-home")}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        procs.procs["superlink"] = superlink
        write_flwr_config(home, f"127.0.0.1:{port}", root / "certs" / "ca.pem")
        (home / "config.toml").write_text((home / "config.toml").read_text().replace("fedsynth", CONNECTION))
        deadline = time.time() + 60
        while True:
            try:
                for name in ("a", "b"):
                    flwr(["supernode", "register", str(root / "keys" / f"{name}.pub"), CONNECTION], home)
                break
            except AssertionError:
                if time.time() > deadline or superlink.poll() is not None:
                    raise
                time.sleep(1)
        for i, name in enumerate(("a", "b"), start=1):
            procs.start(name, ["client", "--data", f"silos/client-{i}.csv", "--schema", "silos/schema.json",
                               "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", f"127.0.0.1:{port}",
                               "--ca-cert", "certs/ca.pem", "--auth-key", f"keys/{name}", "--state-dir", f"state/{name}",
                               "--init-ledger"])
        config = root / "federation.toml"  # the example's settings, one round: the route is under test, not training
        config.write_text(EXAMPLE_CONFIG.read_text().replace("rounds = 2", "rounds = 1"))
        run_config = (f'federation-config="{config}" schema="{root / "silos/schema.json"}" '
                      f'out-dir="{root / "run"}" clients=2')
        submitted = flwr(["run", str(REPO), CONNECTION, "--run-config", run_config], home)
        run_id = str(submitted["run-id"])
        deadline = time.time() + 420
        status = ""
        while not status.startswith("finished") and time.time() < deadline:
            time.sleep(3)
            runs = flwr(["ls", CONNECTION, "--run-id", run_id], home, timeout=60).get("runs") or [{}]
            status = str(runs[0].get("status", ""))
        yield {"root": root, "status": status, "log": (root / "superlink.log").read_text(errors="replace")}
    finally:
        procs.stop_all()


def test_flwr_run_of_the_repository_ends_with_a_synthesizer_and_model_card(flower_route):
    root, status = flower_route["root"], flower_route["status"]
    assert status == "finished:completed", flower_route["log"][-4000:]
    run = root / "run"
    card = json.loads((run / "model_card.json").read_text())
    assert card["model_id"] == json.loads((run / "synthesizer" / "synthesizer.json").read_text())["model_id"]
    assert card["rounds_planned"] == card["rounds_completed"] == 1
    assert [r["contributors"] for r in card["rounds"]] == [2]
    assert card["secure_aggregation"]["protocol"] == "SecAgg+ (Flower)"
    assert all(0 < c["epsilon_spent"] <= 1.0 for c in card["clients"]), card["clients"]
    res = run_cli(["sample", "run/synthesizer", "--rows", "50", "--out", "synth.csv"], root)
    assert res.returncode == 0, res.stderr + res.stdout
