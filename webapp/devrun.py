"""`make run`: make sure Redis answers (starting a private redis-server if needed), then run
web, worker and scheduler together with honcho, and stop the private Redis afterwards."""
import os
import shutil
import socket
import subprocess
import sys
import time

import redis

PRIVATE_PORT = int(os.environ.get("FIRETIME_PRIVATE_REDIS_PORT", "6390"))


def answers(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
             "--dir", self.workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    """Return (url, PrivateRedis-or-None)."""
    if os.environ.get("REDIS_URL"):
        url = os.environ["REDIS_URL"]
        if not answers(url):
            sys.exit(f"REDIS_URL={url} does not answer. Start that Redis, or unset REDIS_URL to let "
                     "`make run` start a private one.")
        return url, None
    for url in ("redis://127.0.0.1:6379/0", f"redis://127.0.0.1:{PRIVATE_PORT}/0"):
        if answers(url):
            return url, None
    if shutil.which("redis-server") is None:
        sys.exit("No Redis answers on 127.0.0.1:6379 and redis-server is not installed.\n"
                 "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
                 "or set REDIS_URL.")
    os.makedirs(instance_dir, exist_ok=True)
    server = PrivateRedis(instance_dir, PRIVATE_PORT).start()
    print(f"Started a private redis-server on port {PRIVATE_PORT}.", flush=True)
    return server.url, server


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    instance = os.environ.get("FIRETIME_INSTANCE_DIR", os.path.join(root, "instance"))
    url, process = ensure_redis(instance)
    env = {**os.environ, "REDIS_URL": url, "FLASK_APP": "webapp"}
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    try:
        for step in (["flask", "db", "upgrade"], ["flask", "demo", "seed"]):
            subprocess.run(step, env=env, cwd=root, check=True)
        port = os.environ.get("PORT", "5000")
        print(f"Firetime on http://127.0.0.1:{port}/ (sign in as superadmin / demo). Ctrl-C stops.", flush=True)
        return subprocess.call(["honcho", "start", "-f", "Procfile", "-p", port], env=env, cwd=root)
    except KeyboardInterrupt:
        return 0
    finally:
        if process is not None:
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
