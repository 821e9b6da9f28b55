"""The probe's attack replayed on a live deployment: a foreign Flower app never runs on an institution.

The attacker's app asks every SuperNode to read its table (``open(node_config["data"])``)
and send the rows back. Submitted through the institutions' port it is refused by the
gateway (only the Fleet API is served there); submitted on the coordinator's own machine
(the loopback Control API, where the coordinator itself could do it) the SuperLink accepts
it, and every institution answers with a refusal naming the app, writing nothing and
sending no row, while the fedsynth run beside it completes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_deployment import ENV, EXAMPLE_CONFIG, Processes, run_cli, start_coordinator

ATTACK_PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "evil"
version = "1.0.0"
dependencies = []

[tool.flwr.app]
publisher = "attacker"

[tool.flwr.app.components]
serverapp = "evil_app:server"
clientapp = "evil_app:client"

[tool.flwr.app.config]
loot = ""
"""

ATTACK_CODE = '''
import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

client = ClientApp()


@client.query()
def steal(msg, context):
    rows = open(context.node_config["data"]).read(400)
    Path(context.run_config["loot"] + ".ran-on-institution").write_text(rows)
    return Message(RecordDict({"loot": ConfigRecord({"rows": rows})}), reply_to=msg)


server = ServerApp()


@server.main()
def main(grid, context):
    deadline = time.time() + 180
    while len(nodes := list(grid.get_node_ids())) < 2 and time.time() < deadline:
        time.sleep(1)
    asks = [Message(RecordDict(), dst_node_id=n, message_type="query") for n in nodes]
    got = []
    for reply in grid.send_and_receive(asks, timeout=180):
        got.append({"error": reply.error.reason} if reply.has_error() else {"rows": reply.content["loot"]["rows"]})
    Path(context.run_config["loot"]).write_text(json.dumps({"nodes": len(nodes), "replies": got}))
'''


def flwr(args: list[str], home: Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "flwr"
    return subprocess.run([str(exe), *args], cwd=cwd, env={**ENV, "FLWR_HOME": str(home)}, capture_output=True,
                          text=True, timeout=timeout)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack")
    names = ("hospital-a", "hospital-b")
    for args in (["split", "--out", "silos", "--clients", "2", "--rows-per-silo", "300"], ["certs", "--out", "certs"],
                 ["keys", "--out", "keys", "--name", names[0], "--name", names[1]]):
        res = run_cli(args, root)
        assert res.returncode == 0, res.stderr + res.stdout
    app = root / "evil"
    app.mkdir()
    (app / "pyproject.toml").write_text(textwrap.dedent(ATTACK_PYPROJECT))
    (app / "evil_app.py").write_text(ATTACK_CODE)
    loot = root / "loot.json"
    procs = Processes(root)
    try:
        addr = start_coordinator(procs, "coordinator", [
            "coordinator", "--config", str(EXAMPLE_CONFIG), "--schema", "silos/schema.json", "--certs", "certs",
            *sum((["--authorized-key", f"keys/{n}.pub"] for n in names), []), "--out", "run"])
        for i, name in enumerate(names, start=1):
            procs.start(name, [
                "client", "--data", f"silos/client-{i}.csv", "--schema", "silos/schema.json", "--budget-epsilon", "1",
                "--budget-delta", "1e-5", "--coordinator", addr, "--ca-cert", "certs/ca.pem", "--auth-key",
                f"keys/{name}", "--state-dir", f"state/{name}", "--init-ledger"])
        wait_for(lambda: "waiting for 2 institutions" in procs.output("coordinator"), 120, "the coordinator")

        # An outsider with ca.pem and the institutions' address, as in the probe.
        outsider = root / "outsider-home"
        outsider.mkdir()
        (outsider / "config.toml").write_text(
            f'[superlink]\ndefault = "public"\n\n[superlink.public]\naddress = "{addr}"\n'
            f'root-certificates = {json.dumps(str(root / "certs/ca.pem"))}\n')
        from_outside = flwr(["run", str(app), "public", "--run-config", f"loot={json.dumps(str(loot))}",
                             "--format", "json"], outsider, root)

        # The same app submitted where the coordinator itself could: its loopback Control API.
        inside = flwr(["run", str(app), "fedsynth", "--run-config", f"loot={json.dumps(str(loot))}", "--format",
                       "json"], root / "run/flower/home", root)
        wait_for(loot.exists, 240, "the foreign ServerApp's result")
        coordinator_rc = procs.wait("coordinator", timeout=420)
        yield {"root": root, "procs": procs, "names": names, "loot": loot, "outside": from_outside,
               "inside": inside, "coordinator_rc": coordinator_rc}
    finally:
        procs.stop_all()


def test_a_foreign_app_cannot_be_submitted_through_the_institutions_port(attacked):
    res, out = attacked["outside"], attacked["procs"].output("coordinator")
    # flwr exits 0 even when the run was refused: read its JSON answer (printed over several lines)
    answer, _ = json.JSONDecoder().raw_decode(res.stdout[res.stdout.index("{"):])
    assert answer.get("success") is False and "run-id" not in answer, res.stdout + res.stderr
    assert "gateway refused POST /v1/control/" in out, out[-3000:]


def test_a_foreign_app_submitted_on_the_coordinator_runs_on_no_institution(attacked):
    loot = json.loads(attacked["loot"].read_text())
    assert loot["nodes"] == 2 and len(loot["replies"]) == 2, loot
    for reply in loot["replies"]:
        assert "rows" not in reply, "an institution ran the foreign app and sent rows back"
        assert "refused to run" in reply["error"] and "'attacker/evil'" in reply["error"], reply
    assert not Path(str(attacked["loot"]) + ".ran-on-institution").exists()
    for name in attacked["names"]:
        log = attacked["procs"].output(name)
        assert "refused to run" in log and "app 'attacker/evil' is not 'fedsynth/fedsynth'" in log, log[-3000:]
        assert not (attacked["root"] / "state" / name / "flower" / "apps").exists()  # no bundle installed


def test_the_fedsynth_run_beside_the_attack_still_completes(attacked):
    assert attacked["coordinator_rc"] == 0, attacked["procs"].output("coordinator")[-3000:]
    assert (attacked["root"] / "run" / "model_card.json").is_file()
