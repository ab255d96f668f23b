"""A finished run's log, a page at a time: a run may have 100,000 lines, and neither its page, its
popup nor a replay of its stream sends them all. Lines are addressed by their seq, so a page's
address (`?before=<seq>`) keeps meaning the same lines. A page may be filtered by level and by a
text the lines contain; the download sends every line, a batch at a time."""
from dataclasses import dataclass, field

from sqlalchemy import func, select

from webapp.execution.context import LEVELS
from webapp.extensions import db
from webapp.models import RunLogLine

PAGE_LINES = 1000  # the lines a run's page shows at once, and a replayed stream sends at most
POPUP_LINES = 500  # the lines the popup shows at once: it opens in well under a second
DOWNLOAD_BATCH = 5000
SEARCH_MAX = 200  # characters of a search; a longer one is cut


@dataclass(frozen=True)
class LogFilter:
    """Which lines a reader asked for: some levels (none named: all) and a text they contain."""

    levels: tuple[str, ...] = ()
    search: str = ""

    @classmethod
    def from_args(cls, args) -> "LogFilter":
        """From a query string (`?level=warning&level=error&q=text`); unknown levels are ignored,
        control characters dropped (PostgreSQL cannot even compare a NUL) and the text bounded."""
        levels = tuple(level for level in LEVELS if level in args.getlist("level"))
        search = "".join(ch for ch in (args.get("q") or "")[:SEARCH_MAX] if ch.isprintable()).strip()
        return cls(() if len(levels) == len(LEVELS) else levels, search)

    @property
    def active(self) -> bool:
        return bool(self.levels or self.search)

    def shows(self, level: str) -> bool:
        return not self.levels or level in self.levels

    def query_args(self) -> dict:
        """The filter as url_for arguments, so that paging keeps it."""
        return {key: value for key, value in (("level", list(self.levels)), ("q", self.search)) if value}

    def conditions(self) -> list:
        where = []
        if self.levels:
            where.append(RunLogLine.level.in_(self.levels))
        if self.search:  # "%" and "_" are what they say, not patterns
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(RunLogLine.message.ilike(f"%{escaped}%", escape="\\"))
        return where


def last_lines(run_id: int, *, after: int = 0, before: int | None = None, limit: int = PAGE_LINES,
               where=()) -> tuple[list[RunLogLine], int]:
    """The last `limit` lines with after < seq < before (and `where`), oldest first, and how many
    lines of that range come before them (left out)."""
    query = select(RunLogLine).where(RunLogLine.run_id == run_id, RunLogLine.seq > after, *where)
    if before is not None:
        query = query.where(RunLogLine.seq < before)
    lines = db.session.scalars(query.order_by(RunLogLine.seq.desc()).limit(limit)).all()[::-1]
    if not lines:
        return [], 0
    return lines, _count(run_id, RunLogLine.seq > after, RunLogLine.seq < lines[0].seq, *where)


@dataclass
class LogPage:
    lines: list[RunLogLine]
    earlier: int  # lines before the first shown
    later: int  # lines after the last shown
    later_before: int | None  # the address of the page after this one; None: the end of the log
    shown: LogFilter = field(default_factory=LogFilter)  # the lines asked for


def log_page(run_id: int, before: int | None = None, *, limit: int = PAGE_LINES,
             shown: LogFilter = LogFilter()) -> LogPage:
    """The lines shown at `?before=<seq>`: the page of lines before that seq, or the last page."""
    where = shown.conditions()
    lines, earlier = last_lines(run_id, before=before, limit=limit, where=where)
    if before is not None and not lines:  # an address before the first line: the log's end instead
        return log_page(run_id, limit=limit, shown=shown)
    if before is None:
        return LogPage(lines, earlier, 0, None, shown)
    after_shown = RunLogLine.seq > lines[-1].seq
    later = _count(run_id, after_shown, *where)
    later_before = db.session.scalar(select(RunLogLine.seq).where(RunLogLine.run_id == run_id, after_shown, *where)
                                     .order_by(RunLogLine.seq).offset(limit).limit(1))
    return LogPage(lines, earlier, later, later_before, shown)


def all_lines(run_id: int, batch: int = DOWNLOAD_BATCH):
    """Every stored line of the run in order, read a batch at a time (by seq, not by offset)."""
    after = 0
    while True:
        lines = db.session.scalars(select(RunLogLine).where(RunLogLine.run_id == run_id, RunLogLine.seq > after)
                                   .order_by(RunLogLine.seq).limit(batch)).all()
        yield from lines
        if len(lines) < batch:
            return
        after = lines[-1].seq


def _count(run_id: int, *conditions) -> int:
    return db.session.scalar(select(func.count()).select_from(RunLogLine)
                             .where(RunLogLine.run_id == run_id, *conditions))


TRACEBACK_START = "Traceback (most recent call last)"
TRACEBACK_TAIL = 200  # a failure's traceback is among the run's last lines


def traceback_of(run) -> str | None:
    """The traceback a failed run logged when its job code raised (execution/runner.py), or None.
    Only the run's last lines are looked at: a bounded read, whatever the log's length."""
    if run.status != "failed" or not run.line_count:
        return None
    return db.session.scalar(select(RunLogLine.message).where(
        RunLogLine.run_id == run.id, RunLogLine.seq > run.line_count - TRACEBACK_TAIL,
        RunLogLine.message.like(f"{TRACEBACK_START}%")).order_by(RunLogLine.seq.desc()).limit(1))
