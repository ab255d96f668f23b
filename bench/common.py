"""What every benchmark here shares: a private redis-server, a database made for the run, the
app migrated on it, processes of the project with logs in files, and the clean-up of all of it
(also on Ctrl-C and SIGTERM). Also small helpers to print figures: percentiles, SQL timing.

    with bench_environment(options) as env:      # options from add_common_arguments()
        env.app, env.tmp, env.logdir, env.redis.url, env.database.kind
        env.processes.start("worker", [sys.executable, "worker.py"])
"""
import argparse
import contextlib
import contextvars
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.devrun import PrivateRedis, free_port  # noqa: E402,F401  (free_port: for the scripts)


class BenchError(RuntimeError):
    """A benchmark cannot go on or its result is not valid; main() prints it and exits 1."""


class Database:
    """SQLite in the temp dir, or a fresh database on the PostgreSQL server of --database-url."""

    def __init__(self, base_url, tmp):
        self.base_url = base_url
        self.tmp = tmp
        self.admin = None
        self.name = None
        self.driver = "sqlite"

    def create(self) -> str:
        if not self.base_url:
            return f"sqlite:///{self.tmp / 'db' / 'firetime.db'}"
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        url = make_url(self.base_url)
        if not url.drivername.startswith("postgresql"):
            raise BenchError("--database-url must be a postgresql:// URL (SQLite is the default)")
        self.driver = url.get_driver_name()
        self.name = f"firetime_bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return url.set(database=self.name).render_as_string(hide_password=False)

    @property
    def kind(self):
        return "postgresql" if self.base_url else "sqlite"

    def drop(self):
        if self.admin is None:
            return
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()
        self.admin = None


def log_to_file(path):
    """Send every Python log record of this process to one file, nothing to the terminal."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for logger in logging.Logger.manager.loggerDict.values():  # alembic's fileConfig disables some
        if isinstance(logger, logging.Logger):
            logger.disabled = False
            for old in list(logger.handlers):
                logger.removeHandler(old)


def tail(path, lines=30) -> str:
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def process_env(tmp) -> dict:
    """Environment for processes of the project: ours (DATABASE_URL, REDIS_URL... are set by
    bench_environment) without the development switches. They keep byte code in a cache of our
    own, so they start as a deployed process would even where PYTHONDONTWRITEBYTECODE is set.
    RQ sets RQ_* in a process that ran a worker in-process: never ours to pass on."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIRETIME_ENV", "PYTHONDONTWRITEBYTECODE") and not k.startswith("RQ_")}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
    return env


class Process:
    """A process started in its own session (Ctrl-C in the terminal does not reach it), with its
    output in a log file; stop() ends it and everything it forked."""

    def __init__(self, argv, env, log_path):
        self.log_path = Path(log_path)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self):
        """SIGTERM to the process group: a warm shut-down."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def kill(self):
        """SIGKILL to the process group and to the groups of its children (a work horse makes its own)."""
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, grace=10.0):
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def children(pid) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


@dataclass
class Processes:
    """Every process a benchmark starts, stopped at the end whatever happens."""

    env: dict
    logdir: Path
    started: list = field(default_factory=list)

    def start(self, name, argv, env=None) -> Process:
        process = Process(argv, {**self.env, **(env or {})}, self.logdir / f"{name}.log")
        self.started.append(process)
        return process

    def project(self, name, *args, env=None) -> Process:
        """`python worker.py <args>`: a worker (no args) or the scheduler ("scheduler")."""
        return self.start(name, [sys.executable, str(ROOT / "worker.py"), *args], env)

    def stop_all(self, grace=10.0):
        """All at once: SIGTERM, up to `grace` seconds for them to end, then SIGKILL."""
        for process in self.started:
            process.terminate()
        deadline = time.monotonic() + grace
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(max(0.0, deadline - time.monotonic()))
        while self.started:
            self.started.pop().kill()


@dataclass
class Env:
    app: object
    tmp: Path
    logdir: Path
    redis: PrivateRedis
    database: Database
    processes: Processes


def new_parser(doc):
    """An argument parser described by the script's docstring, with --database-url and --log-dir."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    return parser


def add_common_arguments(parser):
    parser.add_argument("--database-url", help="a PostgreSQL server URL, e.g. postgresql://postgres@127.0.0.1:5432/"
                                               "test: a fresh database is created on it and dropped at the end "
                                               "(default: SQLite in a temp dir)")
    parser.add_argument("--log-dir", help="keep the process logs here (default: a temp dir, removed at the end)")


@contextlib.contextmanager
def bench_environment(options, extra_env=None, config_class=None):
    """A private redis-server and database, the environment pointing at them (read by Config and
    inherited by processes), the app created and migrated with its context pushed. Everything is
    removed at the end, also on Ctrl-C, and on SIGTERM (which exits through the finally blocks)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="firetime-bench-"))
    logdir = Path(options.log_dir).resolve() if options.log_dir else tmp / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    log_to_file(logdir / "bench.log")
    redis_server = PrivateRedis(tmp)
    database = Database(options.database_url, tmp)
    processes = None
    app_ctx = None
    try:
        redis_server.start()
        database_url = database.create()
        os.environ.update({
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "FIRETIME_INSTANCE_DIR": str(tmp / "instance"),
            "FIRETIME_FILES_DIR": str(tmp / "instance" / "files"),
            **(extra_env or {}),
        })
        os.environ.pop("FIRETIME_ENV", None)
        from flask_migrate import upgrade

        from config import Config
        from webapp import create_app

        app = create_app(config_class or Config)
        app_ctx = app.app_context()
        app_ctx.push()
        with open(logdir / "bench.log", "a") as out, contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            upgrade()
        log_to_file(logdir / "bench.log")  # undo alembic's logging set-up
        processes = Processes(process_env(tmp), logdir)
        yield Env(app, tmp, logdir, redis_server, database, processes)
    finally:
        if processes is not None:
            processes.stop_all()
        if app_ctx is not None:
            from webapp.extensions import db

            db.session.remove()
            db.engine.dispose()
            app_ctx.pop()
        redis_server.stop()
        try:
            database.drop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def run_main(options, body, **environment) -> int:
    """Run body(env) in a bench_environment(options, **environment); a BenchError is printed
    and gives exit status 1."""
    try:
        with bench_environment(options, **environment) as env:
            body(env)
        return 0
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted; everything the benchmark started is stopped and removed.", file=sys.stderr)
        return 130


# -- the app's pages, in process ----------------------------------------------------------------

def own_context(method, *args, **kwargs):
    """Call `method` in a context of its own: a test-client request then pushes and tears down
    its own app context (and database session) as in a server, instead of sharing the bench's."""
    return contextvars.Context().run(method, *args, **kwargs)


def signed_in_client(app, username, password):
    """A test client of `app` signed in through the sign-in form, with its CSRF token."""
    from tests.factories import csrf_from

    client = app.test_client()
    page = own_context(client.get, "/login")
    response = own_context(client.post, "/login", data={"username": username, "password": password,
                                                         "csrf_token": csrf_from(page)})
    if response.status_code != 302:
        raise BenchError(f"sign-in of {username} failed: {response.status_code}")
    return client


# -- figures ------------------------------------------------------------------------------------

def percentile(values, p) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks; nan if empty."""
    data = sorted(values)
    if not data:
        return math.nan
    k = (len(data) - 1) * p / 100
    low, high = math.floor(k), math.ceil(k)
    return data[low] + (data[high] - data[low]) * (k - low)


def ms(seconds) -> str:
    """Seconds as milliseconds for a table cell."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    value = seconds * 1000
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def wait_until(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


class SqlTimer:
    """Times every statement the app's engine runs in this process while it is attached, so a
    benchmark can show how many queries a page makes and which one was slowest."""

    def __init__(self, engine):
        self.engine = engine
        self.statements = []  # (seconds, sql)
        self._started = {}

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        started = self._started.pop(id(cursor), None)
        if started is not None:
            self.statements.append((time.perf_counter() - started, statement))

    def take(self):
        """The statements since the last take(), and start counting afresh."""
        taken, self.statements = self.statements, []
        return taken


def one_line(sql, width=240) -> str:
    """The statement on one line, long column lists cut to "…" so that FROM, WHERE and ORDER BY show."""
    text = " ".join(sql.split())
    text = re.sub(r"SELECT ((?:(?!\bFROM\b)[^()])+?) FROM",
                  lambda m: f"SELECT {'…' if len(m.group(1)) > 60 else m.group(1)} FROM", text)
    placeholder = r"(?:\?|%\(\w+\)s|\$\d+)(?:::\w+)?"
    text = re.sub(rf"(?:{placeholder}, ){{3,}}{placeholder}", "?, ?, …", text)  # long IN lists
    return text if len(text) <= width else text[:width - 1] + "…"
