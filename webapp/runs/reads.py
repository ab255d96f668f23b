"""Which run logs a user has read: the jobs list's log icon is dark while the latest run of a
job has lines its user has not read, and opening the log (popup or run page) marks it read for
that user only."""
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import LogRead
from webapp.models.types import utcnow


def mark_read(user, run, lines: int | None = None) -> None:
    """Record that `user` has read `run`'s log up to `lines` (default: all its lines so far)."""
    seen = run.line_count if lines is None else lines
    for _attempt in range(2):  # two tabs opening the same log at once: the second updates
        row = db.session.get(LogRead, (user.id, run.id))
        if row is None:
            db.session.add(LogRead(user_id=user.id, run_id=run.id, lines_read=seen, read_at=utcnow()))
        else:
            row.lines_read = max(row.lines_read, seen)
            row.read_at = utcnow()
        try:
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()


def is_unread(run, lines_read: int | None) -> bool:
    """A run's log is unread while it has lines beyond what the user read, or runs and was
    never opened."""
    if run is None:
        return False
    if lines_read is None:
        return run.line_count > 0 or not run.is_final
    return run.line_count > lines_read


def unread_run_ids(user, runs) -> set[int]:
    """Of `runs` (say, the latest run of each job on a page), those with unread lines: one query."""
    runs = [run for run in runs if run is not None]
    if not runs:
        return set()
    read = dict(db.session.execute(
        select(LogRead.run_id, LogRead.lines_read).where(
            LogRead.user_id == user.id, LogRead.run_id.in_([run.id for run in runs]))).all())
    return {run.id for run in runs if is_unread(run, read.get(run.id))}
