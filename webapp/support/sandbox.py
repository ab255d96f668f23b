"""The work horse's side of a support script run (SPEC 8, S2): start the script's child process
(webapp/support/child.py), turn what it prints and reports into the run's log, hold it to its
time and memory limits and to a cancel, and leave nothing of it running when the run ends.

The child is `python -m webapp.support.child`, exec'ed in a session of its own, in a private
temporary directory removed after the run, with an environment made from an allowlist: the
worker's secrets (SECRET_KEY, the mail password, anything else) never reach the script. What the
child needs comes on its stdin as JSON. Its stdout lines become info lines and its stderr lines
warning lines, as they come; its reports (log, progress, files, its end) come as JSON lines on a
pipe of their own, so no print can forge them.

The horse is made a child subreaper, so processes the script forks, even those that leave its
session (setsid, double forks), stay the horse's descendants: their memory is counted, and when
the script's process ends they are all killed and reaped."""
import contextlib
import ctypes
import json
import mimetypes
import os
import select as fdselect
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from webapp.execution.context import RunCancelled, RunContext
from webapp.extensions import db
from webapp.models.accounts import User
from webapp.models.scripts import ScriptVersion
from webapp.models.settings import get_setting

WATCH_EVERY = 0.15  # seconds between two looks at the time, the memory and a cancel
READ_SIZE = 1 << 16
PIPES_GRACE = 5.0  # seconds to read what is left in the pipes once every process is gone
LONGEST_LINE = 1 << 20  # bytes of a line without its end kept waiting; then it is logged as it is
OUTPUT_NAME = "script-output.log"  # everything printed, kept when the log could not hold it all
PR_SET_CHILD_SUBREAPER = 36
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = str(Path(__file__).resolve().parent.parent.parent)  # holds the webapp package
ENV_KEPT = ("PATH", "LANG", "LANGUAGE", "TZ", "HOME")  # and LC_*: nothing else of the worker's


@dataclass(frozen=True)
class Limits:
    seconds: int
    memory_mb: int


def limits(time_limit: int | None) -> Limits:
    """The job's time limit if it has one, never more than the setting at the run's start; the
    memory setting."""
    most = int(get_setting("script_time_limit"))
    seconds = min(int(time_limit), most) if time_limit else most
    return Limits(max(1, seconds), int(get_setting("script_memory_mb")))


def run_script(ctx: RunContext, config: dict, time_limit: int | None):
    """The support.script job type's run: the job's current script version in a child process."""
    version = ScriptVersion.current(ctx.job_id)
    refusal = _refusal(ctx, version)
    bounds = limits(time_limit) if refusal is None else None
    setup = _setup(ctx, version, config, bounds) if refusal is None else None
    db.session.rollback()  # no transaction of the horse stays open while the script runs
    if refusal:
        fail(ctx, refusal)
        return
    ctx.info(f"Script version {version.number} (MD5 {version.md5}).")
    with tempfile.TemporaryDirectory(prefix="firetime-script-", ignore_cleanup_errors=True) as workdir:
        supervisor = Supervisor(ctx, bounds)
        try:
            supervisor.start(setup, workdir)
            supervisor.watch()
        finally:
            supervisor.close()
    conclude(ctx, supervisor, bounds)


def _refusal(ctx: RunContext, version: ScriptVersion | None) -> str | None:
    """Why the script must not run at all, or None."""
    if version is None:
        return "The job has no script."
    if ctx.run_as is not None:
        active = db.session.scalar(select(User.active).where(User.id == ctx.run_as.id))
        if not active:
            return (f"The run-as user “{ctx.run_as.username}” is deactivated: the script did not run. "
                    "Reactivate the user or choose another run-as user for the job.")
    return None


def _setup(ctx: RunContext, version: ScriptVersion, config: dict, bounds: Limits) -> dict:
    """What the child needs, sent on its stdin (never in its environment)."""
    app_config = current_app.config
    return {
        "script": version.script, "md5": version.md5, "number": version.number, "config": dict(config or {}),
        "run_id": ctx.run_id, "job_id": ctx.job_id,
        "run_as": {"id": ctx.run_as.id, "username": ctx.run_as.username} if ctx.run_as else None,
        "database": {"url": app_config["SQLALCHEMY_DATABASE_URI"],
                     "options": app_config.get("SQLALCHEMY_ENGINE_OPTIONS", {})},
        "files_dir": ctx.files_dir,
        "out_dir": os.path.join(ctx.files_dir, "runs", str(ctx.run_id)),
        "memory_mb": bounds.memory_mb, "time_limit": bounds.seconds,
    }


def child_env(workdir: str) -> dict:
    """The child's whole environment: the allowlist, and what Python in it needs."""
    env = {k: v for k, v in os.environ.items() if k in ENV_KEPT or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    paths = [ROOT, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != ROOT]]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1", TMPDIR=workdir,
               # glibc reserves 64 MiB of address space per thread arena: with RLIMIT_AS, a script
               # starting a few threads would run out of address space, not of memory.
               MALLOC_ARENA_MAX="2")
    return env


def fail(ctx: RunContext, reason: str):
    """Log `reason` as an error and make it the run's message: the run says why the script ended,
    even when the script logged errors of its own before (the runner's message is the first)."""
    ctx.error(reason)
    ctx.first_error = reason


@dataclass
class Stream:
    """One pipe of the child's: bytes read and not yet logged, split into lines logged at `level`."""

    fd: int
    level: str
    read: int = 0  # bytes read so far
    pending: bytearray = field(default_factory=bytearray)  # read, not yet logged
    open: bool = True


@dataclass
class Supervisor:
    """Runs the child and watches it until it and every process it started are gone."""

    ctx: RunContext
    bounds: Limits
    proc: subprocess.Popen | None = None
    streams: dict = field(default_factory=dict)  # fd -> Stream (stdout, stderr)
    channel: Stream | None = None
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    output: object = None  # the whole printed output, in a temporary file
    started_at: float = 0.0
    base_rss: int = 0  # bytes resident in the child before the script started
    stopped: str = ""  # why the horse killed the child: cancelled, time, memory
    end: dict | None = None  # the child's last message
    swept: bool = False
    swept_at: float = 0.0

    def start(self, setup: dict, workdir: str):
        _become_subreaper()
        self.output = tempfile.TemporaryFile()  # the horse's, not in the script's directory
        channel_r, channel_w = os.pipe()
        os.set_blocking(channel_r, False)
        setup = {**setup, "channel_fd": channel_w}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "webapp.support.child", str(os.getpid())], cwd=workdir,
                env=child_env(workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(channel_w,), start_new_session=True)
        finally:
            os.close(channel_w)
        self.started_at = time.monotonic()
        for pipe, level in ((self.proc.stdout, "info"), (self.proc.stderr, "warning")):
            self.streams[pipe.fileno()] = Stream(pipe.fileno(), level)
        self.channel = Stream(channel_r, "")
        for fd in (*self.streams, channel_r):
            self.selector.register(fd, selectors.EVENT_READ)
        with contextlib.suppress(BrokenPipeError):  # a child that died at once: its status tells
            self.proc.stdin.write(json.dumps(setup).encode())
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()

    # -- the loop ----------------------------------------------------------------------------
    def watch(self):
        """Until the child has exited and every pipe is closed: read what comes, and every
        WATCH_EVERY look at a cancel, the time and the memory. Once the child has exited, what
        it left running is killed, so the pipes close."""
        next_look = time.monotonic()
        while self.selector.get_map() or not self.swept:
            now = time.monotonic()
            if self.swept and now > self.swept_at + PIPES_GRACE:
                break  # a pipe held open by a process that is not the horse's: stop reading it
            if now >= next_look:
                self.look()
                next_look = now + WATCH_EVERY
            for key, _ in self.selector.select(max(0.0, next_look - time.monotonic())):
                if key.fd == self.channel.fd:
                    self.read_reports()
                else:
                    self.read_output(self.streams[key.fd])
            if not self.swept and self.proc.poll() is not None:
                self.sweep()
        for stream in self.streams.values():  # a last line without its end
            stream.open = False
            self.emit(stream)

    def read_output(self, stream: Stream):
        """Printed bytes: first the reports already sent (any report the script made before
        these bytes is in the channel by now), then these lines."""
        self.take(stream)
        self.read_reports()
        self.emit(stream)

    def take(self, stream: Stream) -> bool:
        """Read what the pipe holds into `pending`; False at its end."""
        data = os.read(stream.fd, READ_SIZE)
        if not data:
            self.selector.unregister(stream.fd)
            stream.open = False
        stream.read += len(data)
        stream.pending += data
        return bool(data)

    def emit(self, stream: Stream, upto: int | None = None):
        """Log the complete lines pending (those before byte `upto` of the stream), all of it at
        the stream's end or past LONGEST_LINE, and keep them in the whole output."""
        limit = len(stream.pending) if upto is None else max(0, upto - (stream.read - len(stream.pending)))
        cut = stream.pending.rfind(b"\n", 0, limit) + 1
        if (not stream.open and upto is None) or (not cut and limit > LONGEST_LINE):
            cut = limit
        if not cut:
            return
        complete = bytes(stream.pending[:cut])
        del stream.pending[:cut]
        self.output.write(complete if complete.endswith(b"\n") else complete + b"\n")
        text = complete.decode("utf-8", "replace").removesuffix("\n")
        for line in text.split("\n"):
            self.ctx.log(line.removesuffix("\r"), stream.level)

    def read_reports(self):
        """The child's JSON lines that have come (the channel does not block), each after the
        prints that came before it."""
        channel = self.channel
        while channel.open:
            try:
                if not self.take(channel):
                    break
            except BlockingIOError:
                break
        cut = channel.pending.rfind(b"\n") + 1
        complete = bytes(channel.pending[:cut])
        del channel.pending[:cut]
        for line in complete.splitlines():
            try:
                message = json.loads(line)
            except ValueError:  # not the child's: the script wrote on the channel's fd
                continue
            if isinstance(message, dict):
                self._catch_up(message)
                self.report(message)

    def _catch_up(self, message: dict):
        """Log what the script printed before this report (the byte counts the child sent), so
        the log has prints and reports in the order the script made them. Bounded: a script
        that moved its stdout elsewhere printed less here than it counted."""
        for stream, count in zip(self.streams.values(), (message.get("out", 0), message.get("err", 0))):
            if not isinstance(count, int):
                continue
            while stream.open and stream.read < count:
                if not fdselect.select([stream.fd], [], [], 0.2)[0] or not self.take(stream):
                    break
            self.emit(stream, count)

    def report(self, message: dict):
        kind = message.get("t")
        if kind == "log" and message.get("level") in ("info", "warning", "error"):
            text = str(message.get("msg", ""))
            self.ctx.log(text, message["level"])
            self.output.write(text.encode("utf-8", "replace") + b"\n")
        elif kind == "progress":
            self.ctx.progress(int(message.get("percent", 0)), str(message.get("msg", "")))
        elif kind == "file":
            self.record_file(str(message.get("name", "")))
        elif kind == "start":
            self.base_rss = int(message.get("rss", 0))
        elif kind == "end":
            self.end = message

    def record_file(self, name: str):
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            self.ctx.record_file(name, content_type)
        except OSError as exc:  # the script moved or removed it
            self.ctx.error(f"Output file {name} could not be recorded: {exc.strerror}.")

    # -- limits and cancel ---------------------------------------------------------------------
    def look(self):
        if self.stopped or self.swept:
            return
        if self.ctx.cancelled():
            self.stop("cancelled")
        elif time.monotonic() - self.started_at >= self.bounds.seconds:
            self.stop("time")
        elif resident_bytes(descendants(os.getpid())) > self.base_rss + (self.bounds.memory_mb << 20):
            self.stop("memory")

    def stop(self, why: str):
        self.stopped = why
        self.sweep()

    # -- the end ----------------------------------------------------------------------------------
    def sweep(self):
        """Kill the child's process group, then every process still descending from the horse
        (subreaper: those that left the group too), and reap them all, the child last."""
        self.swept, self.swept_at = True, time.monotonic()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.kill()  # a no-op once it has exited (and not reaped: its pid is still its own)
        self.proc.wait()  # its status first: a wait for any child below must not take it
        kill_descendants()

    def close(self):
        """Whatever happened, nothing of the script stays: processes, pipes, the output file."""
        if self.proc is not None and not self.swept:
            self.sweep()
        for fd in list(self.selector.get_map()):
            self.selector.unregister(fd)
        self.selector.close()
        for stream in (*self.streams.values(), self.channel):
            if stream is not None:
                with contextlib.suppress(OSError):
                    os.close(stream.fd)
        if self.proc is not None:
            self.proc.stdout = self.proc.stderr = None  # closed above, by fd

    def keep_output(self):
        """Record everything the script printed as OUTPUT_NAME when the log could not hold it."""
        if self.ctx.dropped_lines and self.output is not None:
            self.output.seek(0)
            with self.ctx.output_file(OUTPUT_NAME, "text/plain", mode="wb") as handle:
                shutil.copyfileobj(self.output, handle, READ_SIZE * 16)
        if self.output is not None:
            self.output.close()


def conclude(ctx: RunContext, supervisor: Supervisor, bounds: Limits):
    """How the run ends, from why the horse stopped the child or how the child ended."""
    supervisor.keep_output()
    end, stopped = supervisor.end or {}, supervisor.stopped
    if stopped == "cancelled":
        raise RunCancelled("Cancelled on request; the script was stopped.")
    if stopped == "time":
        fail(ctx, f"The script was stopped: time limit exceeded ({bounds.seconds} s).")
    elif stopped == "memory" or end.get("status") == "oom":
        fail(ctx, f"The script was stopped: memory limit exceeded ({bounds.memory_mb} MiB).")
    elif end.get("status") == "exception":
        fail(ctx, f"{end.get('type')}: {end.get('text')}")
        ctx.debug(end.get("traceback", ""))
    elif end.get("status") == "exit":
        fail(ctx, f"The script exited with code {end.get('code')}." + (f" {end['text']}" if end.get("text") else ""))
    elif end.get("status") != "ok":
        fail(ctx, _died(supervisor.proc.returncode))


def _died(returncode: int) -> str:
    """The child ended without saying how (killed, os._exit)."""
    if returncode < 0:
        return f"The script's process was killed by {signal.Signals(-returncode).name}."
    return f"The script exited with code {returncode}."


# -- processes --------------------------------------------------------------------------------
def _become_subreaper():
    """Orphans of the script's processes come to the horse, not to init: they stay countable and
    killable. The horse runs one run and exits, so the flag never outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants(root: int) -> list[int]:
    """Every process below `root`, from /proc (each thread's children)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    children = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def resident_bytes(pids: list[int]) -> int:
    """The sum of the processes' resident memory. Pages shared after a fork count in each
    process, so a script that forks is held to its limit on the safe side."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def kill_descendants(patience: float = 10.0):
    """Kill and reap every process below the horse. Orphans of killed processes come to the
    horse as they die, so it goes round until none is left."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        below = descendants(os.getpid())
        if not below:
            return
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        time.sleep(0.01)


def _reap():
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
