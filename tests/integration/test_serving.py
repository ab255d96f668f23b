"""The production web server as the README starts it (`gunicorn -c gunicorn.conf.py`): many live
logs open at once hold no thread each, so every one of them gets its lines and pages still answer;
a Redis outage while they are open ends no worker; and the request state that gevent's workers
interleave (the signed-in user, the database session) stays each request's own."""
import ast
import http.client
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse

import pytest

from bench import proxy
from tests.conftest import ROOT, free_port, wait_for
from tests.factories import make_job, make_user
from webapp.execution import dispatch

HOST = "127.0.0.1"
VIEWERS = 30


class Server:
    """gunicorn -c gunicorn.conf.py on a free port of 127.0.0.1, in a process group of its own."""

    def __init__(self, env, log_path, **settings):
        self.port = free_port()
        self.log_path = log_path
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RQ_")}
        settings = {"FIRETIME_ENV": "production", "FIRETIME_SECURE_COOKIES": "0",  # plain http here
                    "FIRETIME_BIND": f"{HOST}:{self.port}", "WEB_CONCURRENCY": "2", **settings}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"],
                cwd=ROOT, env={**inherited, **env, **settings}, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        assert self.proc.poll() is None, f"gunicorn exited:\n{self.output()}"
        try:
            return request(self.port, "/login", timeout=2)[0] == 200
        except OSError:
            return False

    def workers(self) -> set[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as handle:
                return {int(pid) for pid in handle.read().split()}
        except FileNotFoundError:
            return set()

    def stop(self, sig=signal.SIGINT, grace=10.0):
        """SIGINT: a quick shut-down; SIGTERM: a graceful one (graceful_timeout for open requests)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def output(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")


@pytest.fixture
def server(app, test_env, tmp_path):
    started = Server(test_env, tmp_path / "gunicorn.log")
    try:
        wait_for(started.answers, 60, 0.2, "gunicorn to answer")
        yield started
        served = started.output()  # before a quick shut-down, whose SystemExit gevent prints
    finally:
        started.stop()
    assert "Traceback" not in served, served


def request(port, path, cookie=None, method="GET", body=None, headers=None, timeout=10.0):
    """(status, headers, body) of one request on a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={**({"Cookie": cookie} if cookie else {}), **(headers or {})})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def session_cookie(headers) -> str:
    return next(v.split(";", 1)[0] for v in headers.get_all("Set-Cookie") or [] if v.startswith("session="))


def sign_in(port, username, password="pw") -> str:
    status, headers, body = request(port, "/login")
    token = re.search(rb'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', body).group(1).decode()
    form = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token})
    status, headers, _ = request(port, "/login", session_cookie(headers), "POST", form,
                                 {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 302
    return session_cookie(headers)


class Viewer(threading.Thread):
    """One open live log, as a browser's EventSource holds it: the seq of each line it got."""

    def __init__(self, port, cookie, run_id):
        super().__init__(daemon=True)
        self.port, self.cookie, self.run_id = port, cookie, run_id
        self.status = None
        self.seqs = []
        self.error = None
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)

    def run(self):
        try:
            self.conn.request("GET", f"/runs/{self.run_id}/stream",
                              headers={"Cookie": self.cookie, "Accept": "text/event-stream"})
            response = self.conn.getresponse()
            self.status = response.status
            event, event_id = None, ""
            while raw := response.readline():
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line == "":
                    if event == "line":  # live ids are "<stream entry>/<seq>", replayed ones "db-<seq>"
                        self.seqs.append(int(re.split("[/-]", event_id)[-1]))
                    event = None
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc

    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def close(self):
        if self.conn.sock is not None:
            self.conn.sock.shutdown(2)


@pytest.fixture
def viewers():
    opened = []
    yield opened
    for viewer in opened:
        viewer.close()
    for viewer in opened:
        viewer.join(10)


def open_viewers(port, cookie, run_id, viewers, count=VIEWERS):
    """`count` live logs opened at once; returns them once each has its first line."""
    for _ in range(count):
        viewers.append(Viewer(port, cookie, run_id))
        viewers[-1].start()
    wait_for(lambda: all(v.seqs or v.error or not v.is_alive() for v in viewers), 30, 0.1,
             "every live log to get a line")
    assert [v.error for v in viewers if v.error] == []
    assert {v.status for v in viewers} == {200}
    assert all(v.seqs for v in viewers)
    return viewers


def all_get_new_lines(viewers, timeout):
    """Every viewer gets a line written after the newest one any of them had: live lines."""
    newest = max(v.last_seq() for v in viewers)
    wait_for(lambda: all(v.last_seq() > newest for v in viewers), timeout, 0.1,
             f"every live log to get a line after seq {newest}")


def timed_get(port, path, cookie=None) -> float:
    started = time.monotonic()
    status, _, _ = request(port, path, cookie, timeout=5)
    assert status == 200, path
    return time.monotonic() - started


def blocked_reads() -> int:
    """Connections waiting in a blocking XREAD on our Redis."""
    from webapp.extensions import redis_client

    return sum(1 for client in redis_client.conn.client_list() if client["cmd"] == "xread" and "b" in client["flags"])


def test_pages_answer_and_every_live_log_gets_lines_with_many_open(ctx, server, worker, viewers):
    admin = make_user()
    job = make_job(params={"duration": 60, "lines_per_second": 5})
    run = dispatch.request_run(job, user=admin)
    cookie = sign_in(server.port, admin.username)

    open_viewers(server.port, cookie, run.id, viewers)
    # One Redis reader per run and web process, whatever the number of viewers.
    assert blocked_reads() <= 2  # WEB_CONCURRENCY
    # With a thread per stream, the streams took every thread and no page answered at all.
    for _ in range(5):
        assert timed_get(server.port, "/login") < 2
        assert timed_get(server.port, "/jobs/", cookie) < 2
    all_get_new_lines(viewers, 15)
    assert all(v.is_alive() for v in viewers)  # still open: the run goes on

    # A restart or shut-down waits graceful_timeout (10 s) for requests to end; live logs do not
    # end by themselves, so they are cut then (a browser's EventSource reconnects by itself).
    started = time.monotonic()
    server.stop(signal.SIGTERM, grace=30)
    assert server.proc.returncode == 0 and time.monotonic() - started < 20
    wait_for(lambda: not any(v.is_alive() for v in viewers), 5, message="the live logs to be cut")
    worker.kill()  # the run has a minute to go, which a warm shut-down would wait for


def test_a_redis_outage_while_live_logs_are_open_ends_no_worker(ctx, server, worker, viewers, redis_server):
    admin = make_user()
    job = make_job(params={"duration": 60, "lines_per_second": 5})
    run = dispatch.request_run(job, user=admin)
    cookie = sign_in(server.port, admin.username)
    open_viewers(server.port, cookie, run.id, viewers, 10)
    workers = server.workers()

    redis_server.stop()
    try:
        assert timed_get(server.port, "/login") < 2  # no Redis needed to show the sign-in form
    finally:
        redis_server.start()  # empty, as after a restart without persistence

    all_get_new_lines(viewers, 30)  # the same connections: the streams waited for Redis
    assert server.workers() == workers
    assert all(v.is_alive() for v in viewers)
    worker.kill()


GREENLETS = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()  # as gunicorn's gevent worker does before it loads the app

    import sys
    import gevent
    from flask_login import current_user, login_user

    from config import TestConfig
    from webapp import create_app
    from webapp.extensions import db
    from webapp.models import User

    app = create_app(TestConfig)
    seen, sessions = {}, []

    def request_as(user_id):
        with app.test_request_context("/"):
            login_user(db.session.get(User, user_id))
            session = db.session()
            sessions.append(session)  # alive till the end, so that no two ids can be the same object's
            gevent.sleep(0.05)  # the other request runs meanwhile, on the same thread
            seen[user_id] = (current_user.id, db.session() is session, id(session))
            db.session.remove()

    gevent.joinall([gevent.spawn(request_as, int(arg)) for arg in sys.argv[1:]], timeout=30)
    print(repr(seen))
""")


def test_interleaved_requests_keep_their_own_user_and_database_session(ctx, test_env):
    """gevent runs many requests on one thread: Flask's contexts, Flask-Login's current user and
    Flask-SQLAlchemy's scoped session must follow the greenlet, not the thread."""
    first, second = make_user(), make_user()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RQ_")}
    result = subprocess.run([sys.executable, "-c", GREENLETS, str(first.id), str(second.id)], cwd=ROOT,
                            env={**inherited, **test_env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert seen[first.id][:2] == (first.id, True)
    assert seen[second.id][:2] == (second.id, True)
    assert seen[first.id][2] != seen[second.id][2]


@pytest.fixture
def behind_nginx(app, test_env, tmp_path):
    """The README's production set-up: docs/deploy/nginx.conf in front of a gunicorn for the pages
    and one for the live logs. Yields (proxy port, pages server, live logs server)."""
    nginx = proxy.binary()
    assert nginx, f"the production set-up's test needs nginx: {proxy.INSTALL}"
    hops = {"FIRETIME_PROXY_HOPS": "1"}
    pages, streams = Server(test_env, tmp_path / "pages.log", **hops), Server(test_env, tmp_path / "streams.log", **hops)
    port = free_port()
    conf = proxy.configure(tmp_path / "nginx", HOST, port, pages.port, streams.port)
    front = subprocess.Popen([nginx, "-p", str(conf.parent), "-c", str(conf)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: pages.answers() and streams.answers(), 60, 0.2, "both gunicorns to answer")

        def proxied():
            assert front.poll() is None, (conf.parent / "error.log").read_text()
            try:
                return request(port, "/login", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(proxied, 30, 0.1, "nginx to answer")
        yield port, pages, streams
    finally:
        front.terminate()
        front.wait(10)
        for server in (pages, streams):
            server.stop()


def test_behind_the_documented_proxy_live_logs_have_a_server_of_their_own(ctx, behind_nginx, worker, viewers):
    port, pages, streams = behind_nginx
    admin = make_user()
    job = make_job(params={"duration": 60, "lines_per_second": 5})
    run = dispatch.request_run(job, user=admin)
    cookie = sign_in(port, admin.username)

    open_viewers(port, cookie, run.id, viewers, 3)
    all_get_new_lines(viewers, 10)  # lines arrive one by one: nginx does not buffer the stream
    assert timed_get(port, "/jobs/", cookie) < 2

    # The pages' server goes away: pages fail at the proxy, live logs go on and new ones open.
    pages.stop()
    assert request(port, "/login")[0] == 502
    all_get_new_lines(viewers, 10)
    late = Viewer(port, cookie, run.id)
    viewers.append(late)
    late.start()
    wait_for(lambda: late.seqs or late.error, 30, 0.1, "a live log opened without the pages' server")
    assert late.status == 200 and late.error is None
    assert "Traceback" not in streams.output()
    worker.kill()
