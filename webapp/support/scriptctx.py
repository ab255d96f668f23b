"""What a support script gets (SPEC 8, S2), in its child process: log, warn, error, progress,
output_file, config, run_as, db and audit, both as names of the script's globals and as `ctx.x`.

Everything the script reports goes to the work horse as JSON lines on a pipe of its own (the
channel), never on stdout: a print cannot forge a log level, a file or the script's end. Each
message carries how many bytes the script had printed until then, so that the horse shows the
prints and the reports in the order the script made them (see sandbox.Supervisor._catch_up).

This module imports nothing heavy: a script that never touches `db` starts without Flask or
SQLAlchemy (0.3-1 s on a busy host)."""
import io
import json
import os
import sys
import threading
from collections import namedtuple
from contextlib import contextmanager

RunAs = namedtuple("RunAs", "id username")
LEVELS = {"log": "info", "warn": "warning", "error": "error"}


class CountingWriter(io.RawIOBase):
    """fd 1 or 2 under sys.stdout/sys.stderr, counting the bytes written (see the channel)."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd
        self.count = 0

    def writable(self):
        return True

    def fileno(self):
        return self.fd

    def write(self, data):
        written = os.write(self.fd, data)
        self.count += written
        return written


def counted_stream(fd: int) -> tuple[io.TextIOWrapper, CountingWriter]:
    """A text stream on fd that hands each line to the horse as it is printed (line buffering:
    one write a line, not one a print argument)."""
    raw = CountingWriter(fd)
    text = io.TextIOWrapper(io.BufferedWriter(raw, 1 << 16), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True)
    return text, raw


class Channel:
    """JSON lines to the horse on their own fd. Threads of the script may report at once: one
    message at a time."""

    def __init__(self, fd: int, out: CountingWriter, err: CountingWriter):
        self.fd, self.out, self.err = fd, out, err
        self.lock = threading.Lock()

    def send(self, kind: str, **fields):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # what was printed before the report arrives before it
            except (OSError, ValueError, AttributeError):  # closed or replaced by the script
                pass
        data = (json.dumps({"t": kind, "out": self.out.count, "err": self.err.count, **fields},
                           default=str) + "\n").encode()
        with self.lock:
            self.write(data)

    def write(self, data: bytes):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


class ScriptContext:
    """The run context of a script. `db` is made on first use and committed by the child when
    the script ends without an error (rolled back otherwise), with what `audit` recorded."""

    def __init__(self, channel: Channel, setup: dict):
        self._channel = channel
        self.config = dict(setup["config"])
        self.run_id = setup["run_id"]
        self.job_id = setup["job_id"]
        self.run_as = RunAs(**setup["run_as"]) if setup["run_as"] else None
        self._out_dir = setup["out_dir"]
        self._database = setup["database"]
        self._session = None

    # -- the log ---------------------------------------------------------------------------
    def log(self, message):
        """An info line in the run's log."""
        self._channel.send("log", level="info", msg=str(message))

    def warn(self, message):
        """A warning line: the run ends with warnings."""
        self._channel.send("log", level="warning", msg=str(message))

    def error(self, message):
        """An error line: the run ends failed (the script goes on)."""
        self._channel.send("log", level="error", msg=str(message))

    def progress(self, percent, message=""):
        self._channel.send("progress", percent=max(0, min(100, int(percent))), msg=str(message))

    # -- output files ------------------------------------------------------------------------
    @contextmanager
    def output_file(self, name, mode="w"):
        """Open a new output file of the run; the horse records it (size, SHA-256) once closed.
        The name is made safe as RunContext.output_file makes it (webapp.execution.context.
        output_path), which the horse applies again to find the file."""
        from werkzeug.utils import secure_filename  # 0.1 s: only for scripts that write files

        safe = secure_filename(str(name)) or "output"
        os.makedirs(self._out_dir, exist_ok=True)
        kwargs = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
        with open(os.path.join(self._out_dir, safe), mode, **kwargs) as handle:
            yield handle
        self._channel.send("file", name=safe)

    # -- the database --------------------------------------------------------------------
    @property
    def db(self):
        """A SQLAlchemy session on the application's database (Flask-SQLAlchemy's, in an
        application context of a bare app: the models and webapp.models.audit.record work)."""
        if self._session is None:
            self._session = open_session(self._database)
        return self._session

    def audit(self, action, object, before=None, after=None):  # noqa: A002  (the S2 name)
        """Record an AuditEvent in `db` under the run-as user, with this run's id: it commits with
        the change it describes. `object` is a model instance (its type is its class name) or a
        type name."""
        from webapp.models.audit import record

        self.db  # noqa: B018  (made first: record() adds to its session)
        if isinstance(object, str):
            obj_type, obj = object, None
        else:
            obj_type, obj = _snake(type(object).__name__), object
        return record(str(action), obj_type, obj, actor=self.run_as, run=_Id(self.run_id), before=before,
                      after=after)

    def finish(self, ok: bool):
        """At the script's end: commit what it did to the database (or roll it back)."""
        if self._session is None:
            return
        if ok:
            self._session.commit()
        else:
            self._session.rollback()

    def names(self) -> dict:
        """The script's globals besides its own: the same as ctx.x."""
        return {"ctx": self, "log": self.log, "warn": self.warn, "error": self.error, "progress": self.progress,
                "output_file": self.output_file, "config": self.config, "run_as": self.run_as,
                "db": SessionProxy(self), "audit": self.audit}


class _Id:
    """What record() reads of a run: its id."""

    def __init__(self, id_):
        self.id = id_


class SessionProxy:
    """The global `db`: the session, made on the first attribute the script reads (a global cannot
    be made lazily, a proxy can)."""

    def __init__(self, ctx: ScriptContext):
        object.__setattr__(self, "_ctx", ctx)

    def __getattr__(self, name):
        return getattr(self._ctx.db, name)

    def __setattr__(self, name, value):
        setattr(self._ctx.db, name, value)

    def __repr__(self):
        return f"<lazy database session of run {self._ctx.run_id}>"


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def open_session(database: dict):
    """Flask-SQLAlchemy's session on the application's database, in the context of a bare Flask
    app (no blueprints, no secrets): the models' session and webapp.models.audit.record use it."""
    from flask import Flask
    from sqlalchemy import event

    import webapp.models  # noqa: F401  (every model mapped, so relationships resolve)
    from webapp import _sqlite_pragmas
    from webapp.extensions import db

    app = Flask("firetime.script")
    app.config.update(SQLALCHEMY_DATABASE_URI=database["url"], SQLALCHEMY_ENGINE_OPTIONS=database["options"])
    db.init_app(app)
    context = app.app_context()
    context.push()
    if database["url"].startswith("sqlite"):
        event.listen(db.engine, "connect", _sqlite_pragmas)
    return db.session
