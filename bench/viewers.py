"""Many people watching live logs at once: N open log streams against a real web server, while
pages are timed, live lines are timed from the job to the viewer, and the server's memory is read.

    .venv/bin/python bench/viewers.py                              # 100 viewers, the README's gunicorn
    .venv/bin/python bench/viewers.py --viewers 20 --seconds 20
    .venv/bin/python bench/viewers.py --gunicorn-args "-w 2 -k gthread --threads 4"
    .venv/bin/python bench/viewers.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/viewers.py --viewers 200 --proxy       # the live logs apart, behind nginx

Starts the web server as the README's production section does (`gunicorn ... "webapp:create_app()"`
with FIRETIME_ENV=production; --gunicorn-args chooses the worker class and counts) on a free port of
127.0.0.1, --runs worker processes (`python worker.py`) and one self-test run for each (job type
system.selftest, --lines-per-second, lasting the whole measurement). With --proxy, the README's
production set-up with the live logs apart: nginx with docs/deploy/nginx.conf (bench/proxy.py)
sends /runs/<id>/stream to a second gunicorn (--stream-gunicorn-args) and the rest to the first;
pages and viewers then go through nginx. The script signs in through the sign-in
form and then, with that session cookie:

  pages     one thread requests GET /login (not signed in) and GET /jobs/ (signed in, 1,000 jobs)
            in turn, each on a new connection with a --timeout; first for 10 s with no viewer, then
            all through the viewers' time. An answer that does not come in time is "no answer".
  viewers   --viewers connections each open GET /runs/<id>/stream (server-sent events, spread over
            the runs, all at once) and read it for --seconds, all in one client thread that reads
            each connection as its data arrives and parses it after the measurement (a thread per
            viewer made the client's own scheduling part of the delays). A viewer that got no
            byte of an answer by the end counts as "no byte". For each `line` event of a line
            written after the viewer connected: delay = the instant the kernel received it on the
            viewer's socket (SO_TIMESTAMPNS, so a client late to read does not make a line look
            late) - the instant job code wrote it (the `at` the run context gave the line, read
            back from the run's Redis stream by the event's stream entry id at the end). Also
            printed: the same for the lines written after their own viewer had its answer (to viewers
            already watching), for those written after every viewer had its answer (no
            connection opening meanwhile), and per line, job code to Redis (the entry id, whole
            ms), to its first and to its last viewer; how late the client read.
  memory    RSS of the gunicorn master and its workers from /proc, every second: before the
            viewers, the peak, and at the end.
  CPU       CPU time of the web server, the job workers, Redis, this client and the whole
            machine (other people's processes too) while the viewers watch, in CPUs busy.

Client threads use only the standard library (http.client); all traffic stays on 127.0.0.1. The
client shares the machine's CPUs with the server, workers and Redis (the CPU line says how much it
took); its own lateness to read is not in the delays.
"""
import codecs
import http.client
import os
import re
import selectors
import shlex
import socket
import struct
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
import proxy as proxy_conf  # noqa: E402
import seeding  # noqa: E402

README_GUNICORN = "-c gunicorn.conf.py"  # the production set-up of the README (gevent workers)
PROXY_STREAMS = "-c gunicorn.conf.py -w 2"  # the live logs' server behind the proxy (docs/deploy/nginx.conf)
HOST = "127.0.0.1"
LIVE_ID = re.compile(r"[0-9]+-[0-9]+")  # a Redis stream entry id: a live event
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python does not name it
STAMP_SPACE = socket.CMSG_SPACE(16)  # a struct timespec


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
        self.lines = []  # (stream entry id, instant its event reached this side of the socket)
        self.replayed = 0  # lines of the database's copy (a run that had ended)
        self.status = None
        self.error = None
        self.raw = b""  # received, not parsed yet
        self.head = True  # the response head is still coming
        self.chunked = False
        self.chunk_left = self.skip = 0  # data bytes left in the current chunk; CRLF bytes after it
        self.text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.body = ""  # event-stream text not parsed yet
        self.reads = []  # (data, arrival), parsed after the measurement

    def parse(self):
        for data, arrived in self.reads:
            self.received(data, arrived)
        self.reads = []

    def received(self, data, arrived):
        """`data` read from the socket, which the kernel got at `arrived` (epoch seconds)."""
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.raw = self.raw[:end].decode("latin-1"), self.raw[end + 4:]
            self.head, self.first_byte = False, arrived
            self.status = int(head.split(None, 2)[1])
            self.chunked = "\r\ntransfer-encoding: chunked" in head.lower()
        self.body += self.text.decode(self._unchunked())
        while "\n\n" in self.body:
            block, self.body = self.body.split("\n\n", 1)
            self._event(block, arrived)

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

    def _event(self, block, arrived):
        event, event_id = None, ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                event_id = line[3:].strip()
        if event != "line":
            return
        entry_id = event_id.split("/", 1)[0]
        if LIVE_ID.fullmatch(entry_id):
            self.lines.append((entry_id, arrived))
        else:  # "db-<seq>": replayed from the database
            self.replayed += 1


class Viewers(threading.Thread):
    """Every viewer's connection, read in this one thread as data arrives (selectors): with a
    thread each, hundreds of client threads competing for the interpreter would add their own
    waits to the delays measured.

    A line reached its viewer when the kernel received the data on the viewer's socket (its
    SO_TIMESTAMPNS receive timestamp), not when this thread came round to read it: with 200
    sockets ready at once, the last is read milliseconds after the first, and that is the
    client's own delay. How late this thread read is kept apart (`read_late`). What is read is
    parsed after the measurement, so that the client takes as little CPU as it can from the
    server it measures while it runs (a read that finds the data of several writes gets the
    kernel's time of the last: reading promptly keeps that honest too)."""

    def __init__(self, port, cookie, viewers):
        super().__init__(daemon=True)
        self.port, self.viewers = port, viewers
        self.request = {}
        for run_id in {viewer.run_id for viewer in viewers}:
            self.request[run_id] = (f"GET /runs/{run_id}/stream HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                                    f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n").encode()
        self.read_late = []  # seconds from the kernel's receipt of data to this thread's read
        self.unstamped = 0  # reads without a kernel timestamp (timed at the read instead)
        self.stopping = threading.Event()

    def run(self):
        selector = selectors.DefaultSelector()
        for viewer in self.viewers:
            try:
                viewer.sock = socket.create_connection((HOST, self.port), timeout=10)
                viewer.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
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
                    data, ancillary, _, _ = viewer.sock.recvmsg(65536, STAMP_SPACE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data, ancillary, viewer.error = b"", [], f"{type(exc).__name__}: {exc}"
                read_at = time.time()
                if not data:  # the server ended the stream
                    selector.unregister(viewer.sock)
                    continue
                arrived = kernel_stamp(ancillary)
                if arrived is None:
                    self.unstamped += 1
                    arrived = read_at
                self.read_late.append(read_at - arrived)
                viewer.reads.append((data, arrived))
        selector.close()
        for viewer in self.viewers:
            if viewer.sock is not None:
                viewer.sock.close()

    def stop(self):
        self.stopping.set()
        self.join(10)
        for viewer in self.viewers:
            viewer.parse()


def kernel_stamp(ancillary) -> float | None:
    """The receive timestamp (epoch seconds) in a recvmsg's ancillary data, if any."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanos = struct.unpack("qq", data[:16])
            return seconds + nanos / 1e9
    return None


def written_at(conn, run_ids) -> dict[str, float]:
    """When job code wrote each line still in the runs' Redis streams (the `at` its run context
    gave it, in microseconds), by stream entry id."""
    from webapp.execution import livelog

    instants = {}
    for run_id in run_ids:
        last = "-"
        while True:
            batch = [(entry_id.decode(), fields) for entry_id, fields in
                     conn.xrange(livelog.STREAM.format(run_id), min=last, count=5000)]
            batch = [(entry_id, fields) for entry_id, fields in batch if entry_id != last]
            if not batch:
                break
            for entry_id, fields in batch:
                if fields.get(b"t") == b"line":
                    instants[entry_id] = datetime.fromisoformat(fields[b"at"].decode()).timestamp()
            last = batch[-1][0]
    return instants


class Memory(threading.Thread):
    """RSS of a process and its children, sampled every second."""

    def __init__(self, *pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.samples = []  # (seconds since start, total MB, processes)
        self.stopping = threading.Event()
        self.started = time.monotonic()

    def sample(self):
        pids = [pid for top in self.pids for pid in (top, *children(top))]
        total = sum(rss_mb(pid) for pid in pids)
        self.samples.append((time.monotonic() - self.started, total, len(pids)))
        return total

    def run(self):
        while not self.stopping.wait(1.0):
            self.sample()

    def stop(self):
        self.stopping.set()
        self.join(5)


class CpuUse:
    """CPU seconds used over a stretch of time by the processes of the benchmark, by kind, and by
    the whole machine (others' too): what the server competed with on the shared CPUs."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, groups: dict):
        self.groups = groups  # name -> pids whose CPU (with their descendants') counts
        self.started = self._sample()

    def _sample(self):
        used = {name: sum(self._process(pid) for pid in pids) for name, pids in self.groups.items()}
        used["this client"] = time.process_time()
        used["machine (all processes)"] = self._machine()
        return time.monotonic(), used

    def _process(self, pid) -> float:
        total = 0.0
        for each in [pid, *descendants(pid)]:
            try:
                with open(f"/proc/{each}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / self.TICKS  # utime, stime
        return total

    def _machine(self) -> float:
        with open("/proc/stat") as stat:
            ticks = [int(n) for n in stat.readline().split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / self.TICKS  # all but idle and iowait

    def summary(self) -> str:
        (start, before), (end, after) = self.started, self._sample()
        return ", ".join(f"{name} {(after[name] - before[name]) / (end - start):.2f}" for name in after)


def descendants(pid) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


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


def start_web(env, gunicorn_args, port, name="gunicorn"):
    argv = [sys.executable, "-m", "gunicorn", "-b", f"{HOST}:{port}", *shlex.split(gunicorn_args),
            "webapp:create_app()"]
    settings = {"FIRETIME_ENV": "production", "SECRET_KEY": "bench-" + "x" * 32,
                "FIRETIME_SECURE_COOKIES": "0"}  # plain http on 127.0.0.1
    return answering(env.processes.start(name, argv, settings), port, "gunicorn", 90)


def answering(process, port, name, seconds):
    """The process, once GET /login on the port answers 200."""
    def answers():
        if not process.alive():
            raise BenchError(f"{name} exited; its log:\n{process.output()[-3000:]}")
        try:
            return get(port, "/login", timeout=5)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    wait_until(answers, seconds, 0.2, f"{name} to answer")
    return process


def start_proxy(env, port, pages_port, streams_port):
    """nginx with the README's site configuration (docs/deploy/nginx.conf), its ports replaced."""
    nginx = proxy_conf.binary()
    if nginx is None:
        raise BenchError(f"--proxy needs nginx ({proxy_conf.INSTALL})")
    conf = proxy_conf.configure(env.tmp / "nginx", HOST, port, pages_port, streams_port)
    return answering(env.processes.start("nginx", [nginx, "-p", str(conf.parent), "-c", str(conf)]), port, "nginx", 30)


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

    port = web_port = free_port()
    accounts, live = seed(options, utcnow())
    print(f"Live-log viewers: {options.viewers} streams over {options.runs} self-test runs at "
          f"{options.lines_per_second:g} lines/s each, for {options.seconds} s; gunicorn {options.gunicorn_args}"
          f"{f', live logs: gunicorn {options.stream_gunicorn_args or PROXY_STREAMS}' if options.proxy or options.stream_gunicorn_args else ''}"
          f"{', behind nginx (docs/deploy/nginx.conf)' if options.proxy else ''}; "
          f"{env.database.kind}; load average {load_average()}.", flush=True)
    web = start_web(env, options.gunicorn_args, port)
    webs, stream_port = [web], port
    if options.proxy or options.stream_gunicorn_args:
        stream_port = free_port()
        webs.append(start_web(env, options.stream_gunicorn_args or PROXY_STREAMS, stream_port, "gunicorn-streams"))
    if options.proxy:
        port = free_port()
        webs.append(start_proxy(env, port, web_port, stream_port))
        stream_port = port
    cookie = sign_in(port, accounts.superadmin, seeding.PASSWORD)
    run_ids = start_runs(env, options, live)
    memory = Memory(*(w.pid for w in webs))
    baseline_mb = memory.sample()
    memory.start()

    quiet = PageTimer(port, cookie, options.timeout)
    quiet.start()
    time.sleep(10)
    quiet.stop()

    timer = PageTimer(port, cookie, options.timeout)
    viewers = [Viewer(run_ids[n % len(run_ids)]) for n in range(options.viewers)]
    reader = Viewers(stream_port, cookie, viewers)
    cpu = CpuUse({"web": [w.pid for w in webs], "job workers": [p.pid for p in env.processes.started if p not in webs],
                  "redis": [env.redis.proc.pid]})
    timer.start()
    reader.start()
    time.sleep(options.seconds)
    cpu_use = cpu.summary()
    reader.stop()
    timer.stop()
    written = written_at(env.app.extensions["redis"], run_ids)
    memory.stop()
    end_mb = memory.sample()
    web_processes = memory.samples[-1][2]

    print(f"\nPages (each on a new connection, timeout {options.timeout:g} s):")
    page_figures(quiet, "no viewer")
    page_figures(timer, f"{options.viewers} viewers open")
    no_byte = [v for v in viewers if v.first_byte is None]
    refused = [v for v in viewers if v.status not in (None, 200)]
    waits = [v.first_byte - v.opened for v in viewers if v.first_byte is not None]
    print(f"\nViewers: {len(viewers) - len(no_byte)} of {len(viewers)} got an answer, {len(no_byte)} got no byte"
          f"{f', {len(refused)} answered other than 200' if refused else ''}; time to the answer p50 "
          f"{ms(percentile(waits, 50))} ms, p95 {ms(percentile(waits, 95))} ms, max {ms(max(waits, default=None))} ms.")
    errors = sorted({v.error for v in viewers if v.error})
    for error in errors[:5]:
        print(f"  error: {error}")
    line_figures(viewers, written, reader)
    peak = max(total for _, total, _ in memory.samples)
    print(f"Web memory (RSS, gunicorn masters + workers{' + nginx' if options.proxy else ''}, {web_processes} processes): before the viewers "
          f"{baseline_mb:.0f} MB, peak {peak:.0f} MB, at the end {end_mb:.0f} MB.")
    print(f"CPUs busy while the viewers watched (of {os.cpu_count()}): {cpu_use}.")
    print(f"Load average at the end {load_average()}.")


def spread(values) -> str:
    return (f"p50 {ms(percentile(values, 50))} ms, p95 {ms(percentile(values, 95))} ms, "
            f"p99 {ms(percentile(values, 99))} ms, max {ms(max(values, default=None))} ms")


def line_figures(viewers, written, reader):
    """Each line's delay from job code to each viewer's socket, and where it went."""
    all_answered = max((v.first_byte for v in viewers if v.first_byte is not None), default=None)
    delays, watching, steady, arrivals, unknown, backlog = [], [], [], {}, 0, 0
    for viewer in viewers:
        for entry_id, arrived in viewer.lines:
            at = written.get(entry_id)
            if at is None:
                unknown += 1
                continue
            if at < viewer.opened:
                backlog += 1
                continue
            delays.append(arrived - at)
            if viewer.first_byte is not None and at >= viewer.first_byte:
                watching.append(arrived - at)
            if all_answered is not None and at >= all_answered:
                steady.append(arrived - at)
            arrivals.setdefault(entry_id, []).append(arrived)
    replayed = sum(v.replayed for v in viewers)
    print(f"Live lines, from job code (the line's `at`) to the viewer's side of the socket (kernel receive time): "
          f"{len(delays):,} written after their viewer connected ({backlog:,} older ones sent at connect"
          f"{f', {replayed:,} replayed from the database' if replayed else ''}"
          f"{f', {unknown:,} no longer in Redis to be timed' if unknown else ''}); {spread(delays)}.")
    print(f"  of which {len(watching):,} written after their viewer had its answer (lines to a viewer "
          f"already watching; others may be connecting meanwhile): {spread(watching)}.")
    print(f"  of which {len(steady):,} written after every viewer had its answer (no connection opening "
          f"meanwhile): {spread(steady)}.")
    to_redis = [int(entry_id.split("-")[0]) / 1000 - written[entry_id] for entry_id in arrivals]
    first = [min(times) - written[entry_id] for entry_id, times in arrivals.items()]
    last = [max(times) - written[entry_id] for entry_id, times in arrivals.items()]
    print(f"  per line ({len(arrivals):,} lines): job code to Redis (stream entry id, whole ms) {spread(to_redis)}; "
          f"to its first viewer {spread(first)}; to its last viewer {spread(last)}.")
    print(f"  client: read {spread(reader.read_late)} after the kernel received the data"
          f"{f' ({reader.unstamped:,} reads without a kernel timestamp, timed at the read)' if reader.unstamped else ''}.")


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--viewers", type=int, default=100, help="open live logs (default 100)")
    parser.add_argument("--runs", type=int, default=2, help="self-test runs watched, one worker each (default 2)")
    parser.add_argument("--lines-per-second", type=float, default=5, help="log lines per second of each run (default 5)")
    parser.add_argument("--seconds", type=int, default=30, help="how long the viewers watch (default 30)")
    parser.add_argument("--timeout", type=float, default=15, help="seconds a page may take (default 15)")
    parser.add_argument("--gunicorn-args", default=README_GUNICORN,
                        help=f'worker class and counts (default the README\'s "{README_GUNICORN}")')
    parser.add_argument("--stream-gunicorn-args", default="",
                        help="serve the viewers' streams from a second gunicorn started with these arguments "
                             f"(with --proxy: \"{PROXY_STREAMS}\")")
    parser.add_argument("--proxy", action="store_true",
                        help="the README's production set-up: nginx (docs/deploy/nginx.conf) in front, sending "
                             "the live logs to a gunicorn of their own and the rest to --gunicorn-args; pages "
                             "and viewers go through nginx")
    options = parser.parse_args(argv)
    if options.viewers < 1 or options.runs < 1 or options.seconds < 5:
        parser.error("need --viewers >= 1, --runs >= 1, --seconds >= 5")
    return run_main(options, lambda env: bench(options, env))


if __name__ == "__main__":
    sys.exit(main())
