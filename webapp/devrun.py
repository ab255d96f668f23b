"""`make run`: make sure Redis answers (starting a private redis-server if needed), then run
web, worker and scheduler together with honcho, and stop the private Redis afterwards."""
import os
import shutil
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


def ensure_redis(instance_dir: str):
    """Return (url, process-or-None)."""
    if os.environ.get("REDIS_URL"):
        url = os.environ["REDIS_URL"]
        if not answers(url):
            sys.exit(f"REDIS_URL={url} does not answer. Start that Redis, or unset REDIS_URL to let "
                     "`make run` start a private one.")
        return url, None
    for url in ("redis://127.0.0.1:6379/0", f"redis://127.0.0.1:{PRIVATE_PORT}/0"):
        if answers(url):
            return url, None
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("No Redis answers on 127.0.0.1:6379 and redis-server is not installed.\n"
                 "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
                 "or set REDIS_URL.")
    os.makedirs(instance_dir, exist_ok=True)
    process = subprocess.Popen([binary, "--port", str(PRIVATE_PORT), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", instance_dir], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{PRIVATE_PORT}/0"
    for _ in range(100):
        if answers(url):
            print(f"Started a private redis-server on port {PRIVATE_PORT}.", flush=True)
            return url, process
        time.sleep(0.1)
    process.terminate()
    sys.exit("The private redis-server did not start.")


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
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    sys.exit(main())
