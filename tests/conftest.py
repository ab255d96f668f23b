"""Real parts: a private redis-server per test session, a real database (SQLite, or a fresh
PostgreSQL database when TEST_DATABASE_URL points at a server), real worker processes."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.devrun import PrivateRedis, free_port  # noqa: E402,F401  (free_port: used by tests)


class RedisServer(PrivateRedis):
    def start(self):
        try:
            return super().start()
        except RuntimeError as exc:
            pytest.exit(str(exc), 2)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'firetime.db'}"
        return
    url = make_url(base)
    name = f"firetime_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def test_env(redis_server, database_url, tmp_path_factory):
    """Environment shared by the test process and the workers and schedulers it starts."""
    instance = tmp_path_factory.mktemp("instance")
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "FIRETIME_INSTANCE_DIR": str(instance),
        "FIRETIME_FILES_DIR": str(instance / "files"),
        "FIRETIME_IMPORT_DIR": str(instance / "import"),
        "FIRETIME_HEARTBEAT_SECONDS": "1",
        "FIRETIME_RUN_DEAD_AFTER": "4",
        "FIRETIME_CANCEL_GRACE_SECONDS": "2",
        "FIRETIME_REAP_SECONDS": "1",
        "FIRETIME_TIMEZONE": "Europe/Amsterdam",
        "FIRETIME_JOBTYPE_MODULES": "tests.jobtypes",
        "SECRET_KEY": "test-secret",
    }
    os.environ.update(values)
    return values


@pytest.fixture(scope="session")
def app(test_env):
    from flask_migrate import upgrade

    from config import TestConfig
    from webapp import create_app

    app = create_app(TestConfig)
    with app.app_context():
        upgrade()  # the schema comes from the migrations, so they are tested on every run
    return app


@pytest.fixture(autouse=True)
def _clean(request):
    """Every test starts with an empty database and an empty Redis."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    from webapp.extensions import db, redis_client

    with app.app_context():
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        redis_client.conn.flushall()
        db.session.remove()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app
        from webapp.extensions import db

        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def login_as(app, client):
    """Sign the test client in as a user made with the factories (CSRF on, as in real use)."""
    from tests.factories import csrf_from

    def sign_in(user, password="pw"):
        page = client.get("/login")
        response = client.post("/login", data={"username": user.username, "password": password,
                                               "csrf_token": csrf_from(page)})
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return sign_in


class Process:
    """A worker or scheduler process of the project, in its own process group."""

    def __init__(self, args, env, log_path):
        # Output goes to a file: a pipe nobody reads would fill up and block a chatty worker.
        self.log_path = log_path
        with open(log_path, "wb") as log:
            # RQ sets RQ_WORKER_ID / RQ_JOB_ID in a process that ran a worker in-process: not ours.
            inherited = {k: v for k, v in os.environ.items() if not k.startswith("RQ_")}
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), *args], cwd=ROOT,
                                         env={**inherited, **env}, start_new_session=True,
                                         stdout=log, stderr=subprocess.STDOUT)

    def children(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as handle:
                return [int(pid) for pid in handle.read().split()]
        except FileNotFoundError:
            return []

    def kill(self, sig=signal.SIGKILL):
        """Kill the process and its children (a work horse has a process group of its own),
        as when the machine is lost."""
        for pid in [self.proc.pid, *self.children()]:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(20)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def output(self) -> str:
        with open(self.log_path, "rb") as log:
            return log.read().decode(errors="replace")


def wait_for(predicate, timeout=20.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture
def start_process(test_env, tmp_path):
    started = []

    def start(*args, env=None):
        log_path = tmp_path / f"process-{len(started)}-{'-'.join(args) or 'worker'}.log"
        process = Process(list(args), {**test_env, **(env or {})}, log_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def worker(app, start_process, redis_server):
    """One real RQ worker process on all queues, registered before the test goes on."""
    from rq import Worker

    process = start_process()
    conn = redis_lib.Redis.from_url(redis_server.url)
    wait_for(lambda: Worker.all(connection=conn) or process.proc.poll() is not None, 30, message="worker start")
    assert process.proc.poll() is None, process.output()
    return process
