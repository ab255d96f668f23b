"""`make run` (python -m webapp.devrun): it says which Redis it uses (a private one unless
REDIS_URL is set), starts again a process that exits, stops everything with the reason when one
keeps failing, and SIGTERM stops every process it started, the private Redis too."""
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for


def parent_of() -> dict[int, int]:
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    return parents


def descendants(pid) -> list[int]:
    parents = parent_of()
    found, generation = [], [pid]
    while generation:
        generation = [child for child, parent in parents.items() if parent in generation]
        found += generation
    return found


def command_of(pid) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


ROLES = {"web": "webapp run", "worker": "worker.py --queues default", "worker-system": "worker.py --queues system,mail",
         "worker-scripts": "worker.py --queues scripts", "scheduler": "worker.py scheduler", "redis": "redis-server"}


def role_of(command: str) -> str | None:
    """Which of make run's processes a command line is (the scheduler before the worker: its
    command line contains the worker's)."""
    for role in ("scheduler", "web", "redis", "worker-system", "worker-scripts", "worker"):
        if ROLES[role] in command and "db upgrade" not in command and "demo seed" not in command:
            return role
    return None


class DevRun:
    def __init__(self, tmp_path: Path, port: int):
        self.port, self.redis_port = port, free_port()
        self.log_path = tmp_path / "devrun.log"
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("RQ_", "FIRETIME_", "REDIS_URL", "DATABASE_URL"))}
        env = {**keep, "PORT": str(port), "FIRETIME_INSTANCE_DIR": str(tmp_path / "instance"),
               "FIRETIME_PRIVATE_REDIS_PORT": str(self.redis_port), "SECRET_KEY": "devrun-test"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "webapp.devrun"], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def processes(self) -> dict[str, int]:
        """The processes it started, by role (not a work horse: a fork of its worker)."""
        parents = parent_of()
        return {role: pid for pid in descendants(self.proc.pid)
                if (role := role_of(command_of(pid))) and command_of(parents.get(pid, 0)) != command_of(pid)}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def serves(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return response.status == 200 and json.load(response)
        except OSError:
            return False

    def kill(self):
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


@pytest.fixture
def devrun(tmp_path):
    started = []

    def start(port=None):
        started.append(DevRun(tmp_path, port or free_port()))
        return started[-1]

    yield start
    for run in started:
        run.kill()


def test_make_run_restarts_a_process_that_dies_and_sigterm_stops_them_all(devrun):
    run = devrun()
    try:
        wait_for(run.serves, 180, 0.5, message="make run to serve /healthz")
        first = wait_for(lambda: set(p := run.processes()) == set(ROLES) and p, 30,
                         message="its five processes (web, two workers, scheduler, Redis)")
    except AssertionError as exc:
        raise AssertionError(run.output()[-3000:]) from exc
    assert f"private redis-server started on 127.0.0.1:{run.redis_port}" in run.output()

    os.kill(first["worker"], signal.SIGKILL)
    wait_for(lambda: "worker was killed by SIGKILL; starting it again." in run.output(), 60,
             message="make run to say it restarts the worker")
    again = wait_for(lambda: (p := run.processes()).get("worker", first["worker"]) != first["worker"] and p, 60,
                     message="the worker started again")
    assert all(again[role] == first[role] for role in ("web", "scheduler", "worker-system"))

    everything = descendants(run.proc.pid)
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(60) == 0
    assert not [pid for pid in everything if alive(pid)], run.output()[-3000:]
    assert "private redis-server stopped." in run.output()


def test_make_run_stops_everything_saying_which_process_keeps_failing(devrun):
    with socket.create_server(("127.0.0.1", 0)) as taken:  # the web's port is taken
        run = devrun(port=taken.getsockname()[1])
        try:
            others = wait_for(lambda: {"worker", "scheduler", "redis"} <= set(p := run.processes()) and p, 180,
                              message="worker, scheduler and Redis")
            assert run.proc.wait(120) == 1
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            raise AssertionError(run.output()[-3000:]) from exc
    output = run.output()
    assert "web exited with status 1, 3 times within 60 s: stopping everything" in output
    assert "Address already in use" in output.split("stopping everything")[-1]  # why, in its last lines
    assert not [role for role, pid in others.items() if alive(pid)]
