"""Many people watching live logs at once: N open log streams against a real web server, while
pages are timed, live lines are timed from the job to the viewer, and the server's memory is read.

    .venv/bin/python bench/viewers.py                              # 100 viewers, the README's gunicorn
    .venv/bin/python bench/viewers.py --viewers 20 --seconds 20
    .venv/bin/python bench/viewers.py --gunicorn-args "-w 2 -k gthread --threads 4"
    .venv/bin/python bench/viewers.py --database-url postgresql://postgres@127.0.0.1:5432/test

Starts the web server as the README's production section does (`gunicorn ... "webapp:create_app()"`
with FIRETIME_ENV=production; --gunicorn-args chooses the worker class and counts) on a free port of
127.0.0.1, --runs worker processes (`python worker.py`) and one self-test run for each (job type
system.selftest, --lines-per-second, lasting the whole measurement), signs in through the sign-in
form and then, with that session cookie:

  pages     one thread requests GET /login (not signed in) and GET /jobs/ (signed in, 1,000 jobs)
            in turn, each on a new connection with a --timeout; first for 10 s with no viewer, then
            all through the viewers' time. An answer that does not come in time is "no answer".
  viewers   --viewers connections each open GET /runs/<id>/stream (server-sent events, spread over
            the runs, all at once) and read it for --seconds, all in one client thread that reads
            each connection as its data arrives (a thread per viewer made the client's own
            scheduling part of the delays). A viewer that got no byte of an answer by the end
            counts as "no byte". For each `line` event produced after the viewer connected:
            delay = time received - the instant the line entered the run's Redis stream (the
            stream entry id, in ms; the line's own `at` instead when the event carries it with
            sub-second precision in a datetime attribute).
  memory    RSS of the gunicorn master and its workers from /proc, every second: before the
            viewers, the peak, and at the end.

Client threads use only the standard library (http.client); all traffic stays on 127.0.0.1. The
client shares the machine's CPUs with the server, workers and Redis, so the delays include its
own scheduling.
"""
import codecs
import http.client
import re
import selectors
import shlex
import socket
import sys
import threading
import time
import urllib.parse
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchError, children, free_port, load_average, ms, new_parser, percentile,  # noqa: E402
                    run_main, wait_until)
import seeding  # noqa: E402

README_GUNICORN = "-c gunicorn.conf.py"  # the production set-up of the README (gevent workers)
HOST = "127.0.0.1"
AT_ATTRIBUTE = re.compile(r'datetime="([^"]+)"')


# -- HTTP ---------------------------------------------------------------------------------------

def get(port, path, cookie=None, timeout=15.0, method="GET", body=None, headers=None):
    """(status, headers, body) of one request on a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        all_headers = {**({"Cookie": cookie} if cookie else {}), **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def session_cookie(headers) -> str | None:
    for value in headers.get_all("Set-Cookie") or []:
        if value.startswith("session="):
            return value.split(";", 1)[0]
    return None


def sign_in(port, username, password) -> str:
    status, headers, body = get(port, "/login")
    token = re.search(rb'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', body)
    if status != 200 or token is None:
        raise BenchError(f"GET /login answered {status} without a CSRF token")
    form = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token.group(1).decode()})
    status, headers, _ = get(port, "/login", session_cookie(headers), method="POST", body=form,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    cookie = session_cookie(headers)
    if status != 302 or cookie is None:
        raise BenchError(f"sign-in answered {status} (expected 302 with a session cookie)")
    return cookie


# -- pages, viewers, memory -----------------------------------------------------------------------

class PageTimer(threading.Thread):
    """GET /login and GET /jobs/ in turn until stopped; each answer's time, or None for no answer."""

    def __init__(self, port, cookie, timeout, pause=0.25):
        super().__init__(daemon=True)
        self.port, self.cookie, self.timeout, self.pause = port, cookie, timeout, pause
        self.times = {"/login": [], "/jobs/": []}
        self.errors = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for path, cookie in (("/login", None), ("/jobs/", self.cookie)):
                started = time.perf_counter()
                try:
                    status, _, _ = get(self.port, path, cookie, self.timeout)
                    if status != 200:
                        self.errors.append(f"{path}: {status}")
                    self.times[path].append(time.perf_counter() - started)
                except (OSError, http.client.HTTPException):
                    self.times[path].append(None)
            self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(self.timeout + 5)


class Viewer:
    """One open live log, read by the Viewers thread: the time of its answer and of each new line."""

    def __init__(self, run_id):
        self.run_id = run_id
        self.sock = None
        self.opened = self.first_byte = None
        self.delays = []  # (instant the line was written, delay)
        self.backlog = 0  # lines written before this viewer connected
        self.status = None
        self.error = None
        self.raw = b""  # received, not parsed yet
        self.head = True  # the response head is still coming
        self.chunked = False
        self.chunk_left = self.skip = 0  # data bytes left in the current chunk; CRLF bytes after it
        self.text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.body = ""  # event-stream text not parsed yet

    def received(self, data, now):
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.raw = self.raw[:end].decode("latin-1"), self.raw[end + 4:]
            self.head, self.first_byte = False, now
            self.status = int(head.split(None, 2)[1])
            self.chunked = "\r\ntransfer-encoding: chunked" in head.lower()
        self.body += self.text.decode(self._unchunked())
        while "\n\n" in self.body:
            block, self.body = self.body.split("\n\n", 1)
            self._event(block, now)

    def _unchunked(self) -> bytes:
        if not self.chunked:
            data, self.raw = self.raw, b""
            return data
        data = []
        while self.raw:
            if self.chunk_left:
                part = self.raw[:self.chunk_left]
                data.append(part)
                self.raw, self.chunk_left = self.raw[len(part):], self.chunk_left - len(part)
                self.skip = 0 if self.chunk_left else 2
            elif self.skip:
                skipped = min(self.skip, len(self.raw))
                self.raw, self.skip = self.raw[skipped:], self.skip - skipped
            else:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    break
                self.chunk_left = int(self.raw[:end].split(b";")[0], 16)
                self.raw = self.raw[end + 2:] if self.chunk_left else b""  # a last chunk: the end
        return b"".join(data)

    def _event(self, block, now):
        event, entry_id, data = None, None, []
        for line in block.split("\n"):
            line = line.rstrip("\r")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                entry_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if event == "line":
            at = line_instant(entry_id, "\n".join(data))
            if at is None:
                return
            if at < self.opened:
                self.backlog += 1
            else:
                self.delays.append((at, now - at))


class Viewers(threading.Thread):
    """Every viewer's connection, read in this one thread as data arrives (selectors): with a
    thread each, hundreds of client threads competing for the interpreter would add their own
    waits to the delays measured."""

    def __init__(self, port, cookie, viewers):
        super().__init__(daemon=True)
        self.port, self.viewers = port, viewers
        self.request = {}
        for run_id in {viewer.run_id for viewer in viewers}:
            self.request[run_id] = (f"GET /runs/{run_id}/stream HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                                    f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n").encode()
        self.stopping = threading.Event()

    def run(self):
        selector = selectors.DefaultSelector()
        for viewer in self.viewers:
            try:
                viewer.sock = socket.create_connection((HOST, self.port), timeout=10)
                viewer.opened = time.time()
                viewer.sock.sendall(self.request[viewer.run_id])
                viewer.sock.setblocking(False)
                selector.register(viewer.sock, selectors.EVENT_READ, viewer)
            except OSError as exc:
                viewer.error = f"{type(exc).__name__}: {exc}"
        while not self.stopping.is_set():
            for key, _ in selector.select(0.2):
                viewer = key.data
                try:
                    data = viewer.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data, viewer.error = b"", f"{type(exc).__name__}: {exc}"
                if data:
                    viewer.received(data, time.time())
                else:  # the server ended the stream
                    selector.unregister(viewer.sock)
        selector.close()
        for viewer in self.viewers:
            if viewer.sock is not None:
                viewer.sock.close()

    def stop(self):
        self.stopping.set()
        self.join(10)


def line_instant(entry_id, html) -> float | None:
    """When the line was written: its own `at` if the event carries it precisely, else the Redis
    stream entry id (milliseconds since the epoch)."""
    match = AT_ATTRIBUTE.search(html)
    if match:
        try:
            moment = datetime.fromisoformat(match.group(1))
            if moment.microsecond and moment.tzinfo:
                return moment.timestamp()
        except ValueError:
            pass
    if entry_id and "-" in entry_id:
        return int(entry_id.split("-", 1)[0]) / 1000
    return None


class Memory(threading.Thread):
    """RSS of a process and its children, sampled every second."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []  # (seconds since start, total MB, processes)
        self.stopping = threading.Event()
        self.started = time.monotonic()

    def sample(self):
        pids = [self.pid, *children(self.pid)]
        total = sum(rss_mb(pid) for pid in pids)
        self.samples.append((time.monotonic() - self.started, total, len(pids)))
        return total

    def run(self):
        while not self.stopping.wait(1.0):
            self.sample()

    def stop(self):
        self.stopping.set()
        self.join(5)


def rss_mb(pid) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- the run --------------------------------------------------------------------------------------

def seed(options, now):
    """1,000 jobs for the list; the first --runs of them become the live self-tests."""
    from webapp.extensions import db
    from webapp.models import Job

    accounts = seeding.seed_accounts()
    jobs = seeding.seed_jobs(1000, accounts, now, ZoneInfo("UTC"))
    duration = options.seconds + 120  # outlasts start-up, the page baseline and the viewers
    live = []
    for job_id in list(jobs.ids)[:options.runs]:
        job = db.session.get(Job, job_id)
        job.params = {"duration": duration, "lines_per_second": options.lines_per_second}
        job.plan = {"kind": "disabled"}
        job.next_fire_at = None
        live.append(job)
    db.session.commit()
    return accounts, live


def start_web(env, options, port):
    argv = [sys.executable, "-m", "gunicorn", "-b", f"{HOST}:{port}", *shlex.split(options.gunicorn_args),
            "webapp:create_app()"]
    settings = {"FIRETIME_ENV": "production", "SECRET_KEY": "bench-" + "x" * 32,
                "FIRETIME_SECURE_COOKIES": "0"}  # plain http on 127.0.0.1
    web = env.processes.start("gunicorn", argv, settings)

    def answers():
        if not web.alive():
            raise BenchError(f"gunicorn exited; its log:\n{web.output()[-3000:]}")
        try:
            return get(port, "/login", timeout=5)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    wait_until(answers, 90, 0.5, "gunicorn to answer")
    return web


def start_runs(env, options, live):
    from sqlalchemy import select

    from webapp.execution import dispatch
    from webapp.extensions import db
    from webapp.models import Run, RunStatus

    for n in range(options.runs):
        env.processes.project(f"worker-{n + 1}")
    run_ids = [dispatch.request_run(job).id for job in live]
    db.session.remove()

    def all_running():
        statuses = db.session.scalars(select(Run.status).where(Run.id.in_(run_ids))).all()
        db.session.remove()
        if any(status not in (RunStatus.QUEUED, RunStatus.IN_PROGRESS) for status in statuses):
            raise BenchError(f"a self-test run ended early: {statuses}")
        return all(status == RunStatus.IN_PROGRESS for status in statuses)

    wait_until(all_running, 120, 0.5, "the self-test runs to start")
    return run_ids


def page_figures(timer, label):
    for path, times in timer.times.items():
        answered = [t for t in times if t is not None]
        print(f"  {label:<22} GET {path:<7} {len(answered):>4} answered, {len(times) - len(answered):>3} no answer;"
              f" p50 {ms(percentile(answered, 50)):>6} ms, p95 {ms(percentile(answered, 95)):>6} ms,"
              f" max {ms(max(answered, default=None)):>6} ms")
    for error in sorted(set(timer.errors))[:5]:
        print(f"    (answered {error})")


def bench(options, env):
    from webapp.models.types import utcnow

    port = free_port()
    accounts, live = seed(options, utcnow())
    print(f"Live-log viewers: {options.viewers} streams over {options.runs} self-test runs at "
          f"{options.lines_per_second:g} lines/s each, for {options.seconds} s; gunicorn {options.gunicorn_args}; "
          f"{env.database.kind}; load average {load_average()}.", flush=True)
    web = start_web(env, options, port)
    cookie = sign_in(port, accounts.superadmin, seeding.PASSWORD)
    run_ids = start_runs(env, options, live)
    memory = Memory(web.pid)
    baseline_mb = memory.sample()
    memory.start()

    quiet = PageTimer(port, cookie, options.timeout)
    quiet.start()
    time.sleep(10)
    quiet.stop()

    timer = PageTimer(port, cookie, options.timeout)
    viewers = [Viewer(run_ids[n % len(run_ids)]) for n in range(options.viewers)]
    reader = Viewers(port, cookie, viewers)
    timer.start()
    reader.start()
    time.sleep(options.seconds)
    reader.stop()
    timer.stop()
    memory.stop()
    end_mb = memory.sample()
    web_processes = memory.samples[-1][2]

    print(f"\nPages (each on a new connection, timeout {options.timeout:g} s):")
    page_figures(quiet, "no viewer")
    page_figures(timer, f"{options.viewers} viewers open")
    no_byte = [v for v in viewers if v.first_byte is None]
    refused = [v for v in viewers if v.status not in (None, 200)]
    waits = [v.first_byte - v.opened for v in viewers if v.first_byte is not None]
    delays = [d for v in viewers for _, d in v.delays]
    all_answered = max((v.first_byte for v in viewers if v.first_byte is not None), default=None)
    steady = [d for v in viewers for at, d in v.delays if all_answered is not None and at >= all_answered]
    print(f"\nViewers: {len(viewers) - len(no_byte)} of {len(viewers)} got an answer, {len(no_byte)} got no byte"
          f"{f', {len(refused)} answered other than 200' if refused else ''}; time to the answer p50 "
          f"{ms(percentile(waits, 50))} ms, p95 {ms(percentile(waits, 95))} ms, max {ms(max(waits, default=None))} ms.")
    errors = sorted({v.error for v in viewers if v.error})
    for error in errors[:5]:
        print(f"  error: {error}")
    print(f"Live lines: {len(delays):,} received after their viewer connected ({sum(v.backlog for v in viewers):,} "
          f"older ones replayed); delay p50 {ms(percentile(delays, 50))} ms, p95 {ms(percentile(delays, 95))} ms, "
          f"p99 {ms(percentile(delays, 99))} ms, max {ms(max(delays, default=None))} ms.")
    print(f"  of which {len(steady):,} written after every viewer had its answer (no connection opening "
          f"meanwhile): p50 {ms(percentile(steady, 50))} ms, p95 {ms(percentile(steady, 95))} ms, "
          f"p99 {ms(percentile(steady, 99))} ms, max {ms(max(steady, default=None))} ms.")
    peak = max(total for _, total, _ in memory.samples)
    print(f"Web memory (RSS, gunicorn master + workers, {web_processes} processes): before the viewers "
          f"{baseline_mb:.0f} MB, peak {peak:.0f} MB, at the end {end_mb:.0f} MB.")
    print(f"Load average at the end {load_average()}.")


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--viewers", type=int, default=100, help="open live logs (default 100)")
    parser.add_argument("--runs", type=int, default=2, help="self-test runs watched, one worker each (default 2)")
    parser.add_argument("--lines-per-second", type=float, default=5, help="log lines per second of each run (default 5)")
    parser.add_argument("--seconds", type=int, default=30, help="how long the viewers watch (default 30)")
    parser.add_argument("--timeout", type=float, default=15, help="seconds a page may take (default 15)")
    parser.add_argument("--gunicorn-args", default=README_GUNICORN,
                        help=f'worker class and counts (default the README\'s "{README_GUNICORN}")')
    options = parser.parse_args(argv)
    if options.viewers < 1 or options.runs < 1 or options.seconds < 5:
        parser.error("need --viewers >= 1, --runs >= 1, --seconds >= 5")
    return run_main(options, lambda env: bench(options, env))


if __name__ == "__main__":
    sys.exit(main())
