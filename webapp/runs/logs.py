"""A finished run's log, a page at a time: a run may have 100,000 lines, and neither its page nor
a replay of its stream sends them all. Lines are addressed by their seq, so a page's address
(`?before=<seq>`) keeps meaning the same lines."""
from dataclasses import dataclass

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import RunLogLine

PAGE_LINES = 1000  # the lines a run's page shows at once, and a replayed stream sends at most


def last_lines(run_id: int, *, after: int = 0, before: int | None = None,
               limit: int = PAGE_LINES) -> tuple[list[RunLogLine], int]:
    """The last `limit` lines with after < seq < before, oldest first, and how many lines of that
    range come before them (left out)."""
    query = select(RunLogLine).where(RunLogLine.run_id == run_id, RunLogLine.seq > after)
    if before is not None:
        query = query.where(RunLogLine.seq < before)
    lines = db.session.scalars(query.order_by(RunLogLine.seq.desc()).limit(limit)).all()[::-1]
    if not lines:
        return [], 0
    return lines, _count(run_id, RunLogLine.seq > after, RunLogLine.seq < lines[0].seq)


@dataclass
class LogPage:
    lines: list[RunLogLine]
    earlier: int  # lines before the first shown
    later: int  # lines after the last shown
    later_before: int | None  # the address of the page after this one; None: the end of the log


def log_page(run_id: int, before: int | None = None) -> LogPage:
    """The lines shown at `?before=<seq>`: the page of lines before that seq, or the last page."""
    lines, earlier = last_lines(run_id, before=before)
    if before is not None and not lines:  # an address before the first line: the log's end instead
        return log_page(run_id)
    if before is None:
        return LogPage(lines, earlier, 0, None)
    after_shown = RunLogLine.seq > lines[-1].seq
    later = _count(run_id, after_shown)
    later_before = db.session.scalar(select(RunLogLine.seq).where(RunLogLine.run_id == run_id, after_shown)
                                     .order_by(RunLogLine.seq).offset(PAGE_LINES).limit(1))
    return LogPage(lines, earlier, later, later_before)


def _count(run_id: int, *conditions) -> int:
    return db.session.scalar(select(func.count()).select_from(RunLogLine)
                             .where(RunLogLine.run_id == run_id, *conditions))
