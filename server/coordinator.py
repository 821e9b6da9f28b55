"""``fedsynth coordinator``: a Flower SuperLink with TLS and SuperNode authentication, one run.

What it does, in order:

1. reads the federation config (TOML; see :func:`load_deployment_config`) and the shared
   schema, and fixes the plan's schema hash;
2. starts ``flower-superlink`` (Deployment Engine) with TLS and ``--enable-supernode-auth``
   (plain text only with ``insecure=True``), with runtime dependency installation off:
   fedsynth is already installed, nothing is fetched at run time;
3. registers each institution's *public* key (``flwr supernode register``); a SuperNode
   whose key is not registered is refused by the SuperLink;
4. writes a tiny Flower App project (components ``fedsynth.server.app:app`` and
   ``fedsynth.client.app:app``) and submits it with ``flwr run``, the plan and SecAgg+
   settings travelling in the run config;
5. follows ``events.jsonl`` (written by the ServerApp) to print progress, and asks the
   SuperLink for the run's status, because ``flwr run`` reports success even when the
   ServerApp fails: a run that did not finish ``completed`` with a model is a failure.

Nothing about any institution's data is configured here: tables, budgets and ledgers are
set on each institution's own SuperNode (``fedsynth client``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fedsynth.common.deploy import processes as fp
from fedsynth.common.deploy.flwr_cli import FlwrCli
from fedsynth.common.errors import FedsynthError
from fedsynth.common.progress import StepProgress
from fedsynth.server.deployment_config import CoordinatorOptions, Prepared, prepare
from fedsynth.server.events import EVENTS_FILE, Event, EventTail, format_spent, reported_spend, show_event
from fedsynth.server.fleet_gateway import FleetGateway, GatewayTLS
from fedsynth.server.run_watch import follow_run
from fedsynth.server.run_config import (
    CONNECTION,
    run_config_for,
    write_app_project,
    write_flwr_config,
    write_run_config,
)

REGISTER_AT_ONCE = 8  # institutions' keys registered concurrently (see Coordinator.register_keys)


class Coordinator:
    """One SuperLink and one run; its Flower processes end with it (see fedsynth.common.deploy.processes.Supervisor)."""

    def __init__(self, prep: Prepared, say: Callable[[str], None], warn: Callable[[str], None]) -> None:
        self.p, self.say, self.warn = prep, say, warn
        self.home = prep.flower_dir / "home"
        self.env = fp.child_env(self.home)
        self.children = fp.Supervisor(prep.flower_dir / fp.PID_FILE, "fedsynth coordinator")
        self.superlink: subprocess.Popen | None = None
        self.gateway: FleetGateway | None = None
        self.events = EventTail(Path(prep.settings.out_dir) / EVENTS_FILE)
        self.names: dict[str, str] = {}  # node id -> the institution's key name, as registered
        self.spent: dict[str, float] = {}  # node id -> epsilon spent, as last reported in an event
        self.bar: StepProgress | None = None  # round k/N on a terminal, while a run is followed
        self.flwr = FlwrCli(self.env, prep.flower_dir, CONNECTION)

    # -- lifecycle -----------------------------------------------------------------
    def start_superlink(self) -> None:
        p = self.p
        cmd = [fp.executable("flower-superlink"), "--host", p.connect_host, "--port", str(p.superlink_port),
               "--isolation", "subprocess", "--disable-runtime-dependency-installation"]
        if p.tls is None:
            cmd += ["--insecure"]
        else:
            ca, cert, key = p.tls
            cmd += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                    "--enable-supernode-auth"]
        self.superlink = self.children.start("SuperLink", cmd, self.env, p.flower_dir / "superlink.log")
        self._wait_listening(60)

    def open_gateway(self) -> None:
        """Open the institutions' port: the Fleet API only (see :mod:`fedsynth.server.fleet_gateway`)."""
        p = self.p
        tls = None if p.tls is None else GatewayTLS(*p.tls)
        self.gateway = FleetGateway(p.host, p.port, p.superlink_port, tls, self.warn)
        self.gateway.start()

    def _wait_listening(self, timeout: float) -> None:
        """Until *our* SuperLink listens: one that failed to bind (port taken) is an error naming the holder."""
        assert self.superlink is not None
        self.children.wait_listening(self.superlink, self.p.connect_host, self.p.superlink_port, timeout)

    def register_keys(self) -> None:
        """One ``flwr supernode register`` a key, up to REGISTER_AT_ONCE at a time: each is a Python
        start-up of several seconds, and one after another they held up every run's start."""
        def register(pub: Path) -> dict:
            return self.flwr.once_up("supernode", "register", str(pub), CONNECTION, every=1)

        with ThreadPoolExecutor(max_workers=REGISTER_AT_ONCE) as pool:
            answers = list(pool.map(register, [pub for pub, _ in self.p.keys]))
        for (pub, fingerprint), res in zip(self.p.keys, answers):
            self.names[str(res.get("node-id"))] = pub.name.removesuffix(".pub")
            self.say(f"registered institution key {pub.name} ({fingerprint}) as node {res.get('node-id')}")

    def submit(self) -> str:
        p = self.p
        app = write_app_project(p.flower_dir / "app")
        run_cfg = write_run_config(p.flower_dir / "run_config.toml", run_config_for(p.settings))
        run_id = self.flwr.submit(app, run_cfg)
        s = p.settings
        self.say(f"run {run_id} submitted: {s.plan.rounds} rounds, {s.clients} institutions, SecAgg+ "
                 f"(shares {s.secagg.num_shares}, threshold {s.secagg.reconstruction_threshold}), "
                 f"schema hash {s.plan.schema_hash}")
        return run_id

    def follow(self, run_id: str) -> bool:
        """Print events until the run is finished; True iff it completed with a model.

        On a terminal the rounds show as a bar (round k/N, the time left, the last round's
        contributors and epsilon); elsewhere, and for anything that needs attention, as lines."""
        # plain_lines=0: off a terminal the event lines themselves are the progress
        with StepProgress("round", self.p.settings.plan.rounds, plain_lines=0) as self.bar:
            try:
                return self._follow(run_id)
            finally:
                self.bar = None

    def _follow(self, run_id: str) -> bool:
        out = Path(self.p.settings.out_dir)
        end = follow_run(self.flwr, run_id, self.events, self.children, self._show, self.p.status_every,
                         self.p.run_timeout, poll_s=0.5)
        if end.dead is not None:
            self.warn(f"the {end.dead.name} exited unexpectedly (status {end.dead.proc.returncode}): "
                      f"{fp.log_tail(end.dead.log_file)}")
        elif end.timed_out:
            self.warn(f"run {run_id} exceeded run_timeout = {self.p.run_timeout}s; stopping it")
            try:
                self.flwr.stop(run_id)
            except FedsynthError as exc:
                self.warn(str(exc))
        elif end.completed and (out / "synthesizer").is_dir() and (out / "model_card.json").is_file():
            return True
        else:
            why = end.failure or end.details or "see the SuperLink log"
            self.warn(f"run {run_id} ended as {end.status}: {why} (log: {self.p.flower_dir / 'superlink.log'})")
        self._warn_spent()
        return False

    def _show(self, ev: Event) -> None:
        self.spent.update(reported_spend(ev))
        show_event(ev, self.p.settings.plan.schema_hash, self.names, self.say, self.bar)

    def _warn_spent(self) -> None:
        """A failed run still cost the institutions what they spent: say so, as they reported it."""
        self.warn(f"privacy spent by the institutions in this failed run, as last reported: "
                  f"epsilon {{{format_spent(self.spent, self.names)}}} (each institution's own ledger is "
                  f"authoritative; a round lost to a failure can be counted although no model used it)")

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        self.children.close()
        self.superlink = None


def run_coordinator(opts: CoordinatorOptions, say: Callable[[str], None], warn: Callable[[str], None]) -> bool:
    """The whole `fedsynth coordinator` command; True iff the run completed with a model."""
    prep = prepare(opts)
    prep.flower_dir.mkdir(parents=True, exist_ok=True)
    (prep.flower_dir / "home").mkdir(exist_ok=True)
    write_flwr_config(prep.flower_dir / "home", f"{prep.connect_host}:{prep.superlink_port}",
                      prep.tls[0] if prep.tls else None)
    coord = Coordinator(prep, say, warn)
    for stale in coord.children.reclaim():  # before the try: a running owner's pid file is not ours to remove
        warn(stale)
    try:
        coord.start_superlink()
        coord.open_gateway()
        mode = "plain text (INSECURE)" if prep.tls is None else "TLS, SuperNode authentication on"
        say(f"listening for institutions on {prep.host}:{prep.port} ({mode}; Fleet API only, the SuperLink's "
            f"Control API stays on 127.0.0.1:{prep.superlink_port}); log {prep.flower_dir / 'superlink.log'}")
        coord.register_keys()
        run_id = coord.submit()
        say(f"waiting for {prep.settings.clients} institutions (up to {prep.settings.wait_timeout}s)")
        ok = coord.follow(run_id)
    finally:
        coord.stop()
    if ok:
        out = Path(prep.settings.out_dir)
        say(f"done: {out / 'synthesizer'} and {out / 'model_card.json'}")
    return ok
