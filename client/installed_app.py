"""An institution runs the fedsynth ClientApp it installed, never code the coordinator sends.

A Flower SuperNode in its default mode installs the app bundle (FAB) the SuperLink hands
it and imports the ClientApp that bundle names: whoever can submit a run to the SuperLink
runs code next to the institution's table. ``fedsynth client`` therefore starts its
SuperNode with ``--isolation process`` (the SuperNode then launches nothing itself) and
takes the place of Flower's launcher with :class:`AppExecutor`: it acquires each task from
the SuperNode's local runtime API and runs :func:`run_task` in a process apart from the
SuperNode's, which checks the run's bundle against
:func:`fedsynth.common.protocol.flower_app.foreign_app_reason` and then calls the ClientApp
imported from the installed ``fedsynth`` package. The bundle is never unpacked to disk,
installed or imported; a foreign one is answered with an error and logged by name.

Tasks run in one long-lived worker process, one after another, as Flower's simulation runs
them in its actors: importing the ClientApp (torch, Opacus, Flower) costs seconds of CPU, the
accountant's curves are cached in memory, and a SecAgg+ round is four tasks, so a process per
task paid all of it four times a round (docs/federated.md). A task that arrives while the
worker is busy (another run) gets a process of its own, as before; a worker that dies is
replaced. The worker holds nothing a task did not: messages are data, never code.
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
            from fedsynth.client.supernode_app import app  # lazy: never imported by the executor or for a refusal

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


class _Worker:
    """One process that imports the ClientApp once, then runs the tasks it is handed in turn.

    Tokens go in on its stdin (they never show in `ps`); it says "ready" on a pipe of its own
    (its stdout and stderr are the SuperNode's console) after starting and after each task."""

    def __init__(self, cmd: list[str]) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([*cmd, "--serve", "--ready-fd", str(write_fd)], stdin=subprocess.PIPE,
                                         text=True, pass_fds=(write_fd,),
                                         preexec_fn=parent_death_preexec())  # noqa: PLW1509 (async-signal-safe)
        finally:
            os.close(write_fd)
        self._ready = threading.Event()
        self.tasks_done = -1  # the first "ready" says it started
        self._reader = threading.Thread(target=self._read, args=(read_fd,), name="fedsynth-worker-ready",
                                        daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd) as pipe:
            for _ in pipe:
                self.tasks_done += 1
                self._ready.set()

    def idle(self) -> bool:
        return self.proc.poll() is None and self._ready.is_set()

    def run(self, token: str) -> bool:
        """Hand ``token`` over; False if the worker has gone meanwhile."""
        self._ready.clear()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(token + "\n")
            self.proc.stdin.flush()
            return True
        except OSError:  # a broken pipe: it ended
            return False


class AppExecutor:
    """Acquire ClientApp tasks from the local SuperNode and run each in the worker, or in a
    process of its own while the worker is busy."""

    def __init__(self, runtime_address: str) -> None:
        self.address = runtime_address
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: list[subprocess.Popen] = []  # one-off processes
        self._worker: _Worker | None = None
        self._use_worker = True  # off after a worker died before it ever finished a task

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fedsynth-app-executor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        procs = [*self._tasks, *([self._worker.proc] if self._worker is not None else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()

    def _cmd(self) -> list[str]:
        return [sys.executable, "-m", __name__, "--runtime-api-address", self.address, "--parent-pid",
                str(os.getpid())]

    def _loop(self) -> None:
        client = _runtime_client(self.address, "SuperExec")
        try:
            while not self._stop.is_set():
                self._tasks = [p for p in self._tasks if p.poll() is None]
                self._keep_worker()
                try:
                    res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
                except Exception as exc:  # the SuperNode is (re)starting; its supervisor decides
                    log(WARNING, "app executor: runtime API not reachable (%s)", type(exc).__name__)
                    self._stop.wait(2.0)
                    continue
                if res.HasField("task") and res.token:
                    self._dispatch(res.token)
                    continue
                self._stop.wait(POLL_S)
        finally:
            client.close()

    def _keep_worker(self) -> None:
        """Start the worker, or a new one where it died (never again if one died before any task ended)."""
        if self._worker is not None and self._worker.proc.poll() is not None:
            if self._worker.tasks_done < 1:  # a broken install, say: tasks get processes of their own
                self._use_worker = False
            log(WARNING, "app executor: the ClientApp worker ended (exit code %s)", self._worker.proc.returncode)
            self._worker = None
        if self._worker is None and self._use_worker:
            self._worker = _Worker(self._cmd())

    def _dispatch(self, token: str) -> None:
        if self._worker is not None and self._worker.idle() and self._worker.run(token):
            return
        self._tasks.append(self._launch(token))

    def _launch(self, token: str) -> subprocess.Popen:
        """A process of its own for one task."""
        # The task dies with this process even while busy in C code (training, a gRPC call), where
        # Flower's SIGINT-raising parent monitor (the fallback without prctl) waits for Python.
        # The kernel's signal follows the executor thread that forks here, which lives as long
        # as the executor; stop() ends the tasks itself.
        proc = subprocess.Popen(self._cmd(), stdin=subprocess.PIPE, text=True,  # the token never shows in `ps`
                                preexec_fn=parent_death_preexec())  # noqa: PLW1509 (async-signal-safe)
        assert proc.stdin is not None
        proc.stdin.write(token + "\n")
        proc.stdin.close()
        return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run fedsynth ClientApp tasks (started by `fedsynth client`).")
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--serve", action="store_true", help="run every token read from stdin, one after another")
    parser.add_argument("--ready-fd", type=int, help="with --serve: where to say 'ready' before each token")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    if not args.serve:
        return run_task(args.runtime_api_address, sys.stdin.readline().strip())
    import fedsynth.client.supernode_app  # noqa: F401  (the slow imports, once, before any task)

    ready = os.fdopen(args.ready_fd, "w", buffering=1) if args.ready_fd is not None else None
    while True:
        if ready is not None:
            ready.write("ready\n")
        token = sys.stdin.readline().strip()
        if not token:  # the executor stopped
            return 0
        try:
            run_task(args.runtime_api_address, token)
        except Exception as exc:  # this task is lost (the SuperNode fails it); the next one may run
            log(ERROR, "fedsynth ClientApp task failed: %s", f"{type(exc).__name__}: {exc}"[:500])


if __name__ == "__main__":
    sys.exit(main())
