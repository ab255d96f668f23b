"""`make run`: every process of the Procfile together (web, the workers, the scheduler) with demo data,
on a Redis of their own unless REDIS_URL names one.

A process that exits is started again; one that keeps failing stops everything, with a
message saying which one and why (and its last lines). Ctrl-C, or SIGTERM or SIGHUP to this process,
stops them all, and the private Redis."""
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import redis

PRIVATE_PORT = int(os.environ.get("FIRETIME_PRIVATE_REDIS_PORT", "6390"))
GIVE_UP_AFTER = 3  # exits within WINDOW seconds
WINDOW = 60
STOP_GRACE = 5  # seconds between asking a process to stop and insisting


def answers(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def say(message: str):
    print(f"devrun    | {message}", flush=True)


class PrivateRedis:
    """A redis-server of our own (for `make run`, the tests and the benchmarks), keeping
    nothing on disk, that can be stopped and started again on the same port."""

    def __init__(self, workdir, port=None):
        self.port = port or free_port()
        self.workdir = str(workdir)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server; "
                               "macOS: brew install redis)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own session: the terminal's Ctrl-C must not stop Redis before the processes
            # that use it have stopped (it is stopped last, on purpose).
            start_new_session=True)
        for _ in range(100):
            if answers(self.url):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the private redis-server did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def ensure_redis(instance_dir: str):
    """Return (url, PrivateRedis-or-None). Without REDIS_URL, never whatever answers on 6379
    (another program's Redis, perhaps): a private redis-server on PRIVATE_PORT, reused if one
    runs there already."""
    if os.environ.get("REDIS_URL"):
        url = os.environ["REDIS_URL"]
        if not answers(url):
            sys.exit(f"REDIS_URL={url} does not answer. Start that Redis, or unset REDIS_URL to let "
                     "`make run` start a private one.")
        say(f"Redis: {url} (from REDIS_URL).")
        return url, None
    private = PrivateRedis(instance_dir, PRIVATE_PORT)
    if answers(private.url):
        say(f"Redis: the private redis-server already running on 127.0.0.1:{PRIVATE_PORT} "
            "(set REDIS_URL to use another).")
        return private.url, None
    os.makedirs(instance_dir, exist_ok=True)
    try:
        private.start()
    except RuntimeError as exc:
        sys.exit(f"{exc}, or set REDIS_URL to a Redis of your choice.")
    say(f"Redis: a private redis-server started on 127.0.0.1:{PRIVATE_PORT}, keeping nothing on disk "
        "(set REDIS_URL to use another).")
    return private.url, private


def read_procfile(path) -> dict[str, str]:
    with open(path) as handle:
        return dict(re.findall(r"^([\w-]+):\s*(.+?)\s*$", handle.read(), re.MULTILINE))


class Child:
    """One process of the Procfile, in a process group of its own (so that Ctrl-C in the
    terminal reaches only devrun, which stops the children in order), its output prefixed."""

    def __init__(self, name, command, env, cwd, width=9):
        self.name, self.command, self.env, self.cwd = name, command, env, cwd
        self.width = width  # the longest name of the Procfile: the prefixes line up
        self.tail = collections.deque(maxlen=15)  # its last lines, for a failure message
        self.exits = collections.deque()  # when it exited, within WINDOW
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["/bin/sh", "-c", f"exec {self.command}"], env=self.env, cwd=self.cwd,
                                     start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._relay, args=(self.proc.stdout,), daemon=True).start()

    def _relay(self, stream):
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            print(f"{self.name:{self.width}} | {line}", flush=True)

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def how_it_ended(self) -> str:
        code = self.proc.returncode
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"


class Supervisor:
    def __init__(self, procfile: dict[str, str], env, cwd):
        width = max([9, *map(len, procfile)])
        self.children = [Child(name, command, env, cwd, width) for name, command in procfile.items()]

    def run(self) -> int:
        """Until Ctrl-C or SIGTERM (0), or until a process keeps failing (1)."""
        for child in self.children:
            child.start()
        try:
            while True:
                time.sleep(0.2)
                for child in self.children:
                    if child.proc.poll() is not None and not self._restart(child):
                        return 1
        except KeyboardInterrupt:
            say(f"stopping {', '.join(child.name for child in self.children)}.")
            return 0
        finally:
            self.stop_all()

    def _restart(self, child) -> bool:
        now = time.monotonic()
        child.exits.append(now)
        while child.exits[0] < now - WINDOW:
            child.exits.popleft()
        if len(child.exits) >= GIVE_UP_AFTER:
            say(f"{child.name} {child.how_it_ended()}, {len(child.exits)} times within {WINDOW} s: stopping "
                "everything. Its last lines:\n" + "\n".join(f"{child.name:{child.width}} | {line}" for line in child.tail))
            return False
        say(f"{child.name} {child.how_it_ended()}; starting it again.")
        time.sleep(len(child.exits))  # a moment, longer each time
        child.start()
        return True

    def stop_all(self):
        """SIGTERM; then SIGTERM again for those still running (a second one makes an RQ worker
        stop its work horse instead of waiting for the run); then SIGKILL."""
        try:
            for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
                running = [child for child in self.children if child.proc.poll() is None]
                for child in running:
                    child.signal(sig)
                if not running or self._wait(running, STOP_GRACE):
                    return
        except KeyboardInterrupt:  # Ctrl-C again: no more waiting
            for child in self.children:
                child.signal(signal.SIGKILL)

    @staticmethod
    def _wait(children, seconds) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(child.proc.poll() is not None for child in children):
                return True
            time.sleep(0.1)
        return False


def main():
    # SIGTERM stops everything the way Ctrl-C does (KeyboardInterrupt), whatever the step.
    # So does SIGHUP (the terminal closed): otherwise the children, in sessions of their own,
    # would run on and hold the web port.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    instance = os.environ.get("FIRETIME_INSTANCE_DIR", os.path.join(root, "instance"))
    private = None
    try:
        url, private = ensure_redis(instance)
        env = {**os.environ, "REDIS_URL": url, "FLASK_APP": "webapp"}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        for step in (["flask", "db", "upgrade"], ["flask", "demo", "seed"]):
            subprocess.run(step, env=env, cwd=root, check=True)
        env["PORT"] = port = os.environ.get("PORT", "5000")
        say(f"Firetime on http://127.0.0.1:{port}/ (sign in as superadmin / demo). Ctrl-C stops.")
        return Supervisor(read_procfile(os.path.join(root, "Procfile")), env, root).run()
    except KeyboardInterrupt:
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(exc.cmd)} failed (status {exc.returncode}).")
        return 1
    finally:
        if private is not None:
            private.stop()
            say("private redis-server stopped.")


if __name__ == "__main__":
    sys.exit(main())
