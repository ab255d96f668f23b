"""RunContext: what job code gets to report through. Every line and progress change is kept
in memory for the database at the end, and handed to the run's live Publisher, which sends
it to Redis for the live view from a thread of its own: job code never waits on Redis nor
sees its errors."""
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.utils import secure_filename

from webapp.execution import livelog
from webapp.models.types import utcnow

log = logging.getLogger(__name__)
LEVELS = ("debug", "info", "warning", "error")


class RunCancelled(Exception):
    """Raised by check_cancelled(): the run was cancelled by a user."""


@dataclass(frozen=True)
class RunAs:
    """The user a job runs as. Job code that changes data audits it under this user:
    record(..., actor=ctx.run_as) (None: the system)."""

    id: int
    username: str


def output_path(run_id: int, name: str) -> str:
    """Where output file `name` of a run lives, relative to the files directory."""
    return os.path.join("runs", str(run_id), secure_filename(name) or "output")


@dataclass
class OutputFile:
    name: str
    path: str  # relative to the files directory
    size: int
    sha256: str
    content_type: str
    # An export's file in the archive of exported files: its dataset (id and name) and format.
    dataset_id: int | None = None
    dataset_name: str = ""
    file_format: str = ""


@dataclass
class RunContext:
    run_id: int
    job_id: int
    live: livelog.Publisher | None
    files_dir: str
    params: dict = field(default_factory=dict)
    args: list = field(default_factory=list)
    run_as: RunAs | None = None
    max_lines: int = 100_000
    max_line_chars: int = 10_000
    lines: list = field(default_factory=list)
    files: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    warning_count: int = 0
    error_count: int = 0
    first_error: str = ""
    percent: int = 0
    progress_message: str = ""
    cancel_seen: bool = False
    _cancel_checked: float = 0.0
    _dropped: int = 0

    # -- log -------------------------------------------------------------------------
    def log(self, message, level="info"):
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}")
        message = self._cut(str(message))
        if level == "warning":
            self.warning_count += 1
        elif level == "error":
            self.error_count += 1
            self.first_error = self.first_error or message
        if len(self.lines) >= self.max_lines:
            self._dropped += 1  # counts still matter; the text beyond the cap does not fit
            return
        at = utcnow()
        seq = len(self.lines) + 1
        self.lines.append({"seq": seq, "at": at, "level": level, "message": message})
        if self.live:
            self.live.line_added()

    def _cut(self, text: str) -> str:
        """A line longer than max_line_chars keeps its start and says how long it was: the same
        in memory, the outcome file, Redis and the database."""
        if len(text) <= self.max_line_chars:
            return text
        return f"{text[:self.max_line_chars]} … [line cut: {len(text)} characters in all]"

    def debug(self, message):
        self.log(message, "debug")

    def info(self, message):
        self.log(message, "info")

    def warning(self, message):
        self.log(message, "warning")

    def error(self, message):
        """Log an error; the run ends failed (job code may go on to report more)."""
        self.log(message, "error")

    # -- progress and statistics ---------------------------------------------------------
    def progress(self, percent, message=""):
        percent = max(0, min(100, int(percent)))
        message = self._cut(str(message))
        if percent == self.percent and message == self.progress_message:
            return
        self.percent, self.progress_message = percent, message
        if self.live:
            self.live.set_progress(percent, self.progress_message)

    def stat(self, key, value):
        self.stats[key] = value

    # -- cancellation ----------------------------------------------------------------------
    def cancelled(self) -> bool:
        """True once a user asked to cancel this run. Cheap enough to call in a loop."""
        if self.cancel_seen or self.live is None:
            return self.cancel_seen
        now = time.monotonic()
        if now - self._cancel_checked >= 0.2:
            self._cancel_checked = now
            self.live.ask_cancelled()  # answered by the live thread, seen by a later call
        self.cancel_seen = self.live.cancel_seen
        return self.cancel_seen

    def check_cancelled(self):
        if self.cancelled():
            raise RunCancelled("Cancelled on request.")

    # -- output files ---------------------------------------------------------------------
    @contextmanager
    def output_file(self, name, content_type="text/csv", mode="w", *, dataset_id=None, dataset_name="",
                    file_format=""):
        """Open a new output file of this run for writing; it is recorded when closed. An export
        names its dataset and format, which the archive of exported files lists."""
        path = os.path.join(self.files_dir, output_path(self.run_id, name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        kwargs = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
        with open(path, mode, **kwargs) as handle:
            yield handle
        self.record_file(name, content_type, dataset_id=dataset_id, dataset_name=dataset_name,
                         file_format=file_format)

    def record_file(self, name, content_type="text/csv", *, dataset_id=None, dataset_name="", file_format=""):
        """Record output file `name`, written by now at its place (output_path): by output_file, or
        by a support script's child process, which writes where this process records."""
        relative = output_path(self.run_id, name)
        path = os.path.join(self.files_dir, relative)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        safe = os.path.basename(relative)
        self.files.append(OutputFile(safe, relative, os.path.getsize(path), digest.hexdigest(), content_type,
                                     dataset_id, dataset_name, file_format))
        self.info(f"Wrote output file {safe} ({os.path.getsize(path)} bytes).")

    @property
    def dropped_lines(self) -> int:
        return self._dropped
