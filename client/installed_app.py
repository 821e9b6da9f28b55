"""An institution runs the fedsynth ClientApp it installed, never code the coordinator sends.

A Flower SuperNode in its default mode installs the app bundle (FAB) the SuperLink hands
it and imports the ClientApp that bundle names: whoever can submit a run to the SuperLink
runs code next to the institution's table. ``fedsynth client`` therefore starts its
SuperNode with ``--isolation process`` (the SuperNode then launches nothing itself) and
takes the place of Flower's launcher with :class:`AppExecutor`: it acquires each task from
the SuperNode's local runtime API and starts :func:`run_task` in a fresh process (as
Flower does), which checks the run's bundle against
:func:`fedsynth.common.protocol.flower_app.foreign_app_reason` and then calls the ClientApp
imported from the installed ``fedsynth`` package. The bundle is never unpacked to disk,
installed or imported; a foreign one is answered with an error and logged by name.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from logging import ERROR, WARNING

from flwr.app import Message
from flwr.app.error import Error
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=no-name-in-module
from flwr.supercore import log
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from fedsynth.common.deploy.processes import parent_death_preexec
from fedsynth.common.protocol.flower_app import foreign_app_reason

POLL_S = 0.5
REFUSED_PREFIX = "refused to run"


def _runtime_client(address: str, component: str, token: str | None = None) -> RuntimeHttpClient:
    interceptors = [RuntimeVersionHttpInterceptor(component_name=component)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=True, root_certificates=None,
                                                 interceptors=interceptors,
                                                 retry_invoker=make_simple_http_retry_invoker())


def run_task(address: str, token: str) -> int:
    """One task: pull the message, check the run's app, answer with the installed ClientApp."""
    client = _runtime_client(address, "flwr-clientapp", token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    context, status, details = None, SubStatus.FAILED, "fedsynth ClientApp failed"
    try:
        message, context, run, fab = pull_task_input(client)
        refusal = foreign_app_reason(run.fab_id, run.fab_version, fab.content)
        if refusal is not None:
            details = (f"{REFUSED_PREFIX} run {run.run_id}: {refusal} (bundle sha256 {fab.hash_str[:16]}); "
                       "this institution runs only the fedsynth it installed, nothing was installed or run")
            log(ERROR, "%s", details)
            reply = Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=details), reply_to=message)
        else:
            # Installed code, never the bundle's.
            from fedsynth.client.supernode_app import app  # lazy: only our own app needs torch; a refusal does not

            try:
                reply = app(message=message, context=context)
                status, details = SubStatus.COMPLETED, ""
            except Exception as exc:  # answered as an error, like Flower's own runner
                log(ERROR, "fedsynth ClientApp raised an exception", exc_info=exc)
                details = f"{type(exc).__name__}: {exc}"[:500]
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        push_message(client, reply, context)
    finally:
        push_task_output(client=client, context=context, sub_status=status, details=details)
        heartbeat.stop()
        client.close()
    return 0 if status == SubStatus.COMPLETED else 1


class AppExecutor:
    """Acquire ClientApp tasks from the local SuperNode and run each in a fresh process."""

    def __init__(self, runtime_address: str) -> None:
        self.address = runtime_address
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: list[subprocess.Popen] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fedsynth-app-executor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for proc in self._tasks:
            if proc.poll() is None:
                proc.terminate()

    def _loop(self) -> None:
        client = _runtime_client(self.address, "SuperExec")
        try:
            while not self._stop.is_set():
                self._tasks = [p for p in self._tasks if p.poll() is None]
                try:
                    res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
                except Exception as exc:  # the SuperNode is (re)starting; its supervisor decides
                    log(WARNING, "app executor: runtime API not reachable (%s)", type(exc).__name__)
                    self._stop.wait(2.0)
                    continue
                if res.HasField("task") and res.token:
                    self._tasks.append(self._launch(res.token))
                self._stop.wait(POLL_S)
        finally:
            client.close()

    def _launch(self, token: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", __name__, "--runtime-api-address", self.address, "--parent-pid",
               str(os.getpid())]
        # The task dies with this process even while busy in C code (training, a gRPC call), where
        # Flower's SIGINT-raising parent monitor (the fallback without prctl) waits for Python.
        # The kernel's signal follows the executor thread that forks here, which lives as long
        # as the executor; stop() ends the tasks itself.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True,  # the token never shows in `ps`
                                preexec_fn=parent_death_preexec())  # noqa: PLW1509 (async-signal-safe)
        assert proc.stdin is not None
        proc.stdin.write(token + "\n")
        proc.stdin.close()
        return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one fedsynth ClientApp task (started by `fedsynth client`).")
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    return run_task(args.runtime_api_address, sys.stdin.readline().strip())


if __name__ == "__main__":
    sys.exit(main())
