"""What the tabs of the job page read: a job's latest executions, its audit records, its charts
and when it last ran. Callable without HTTP.

Every query here reads a bounded window through the indexes runs (job_id, id) and (job_id,
created_at, id), so a tab costs the same for a job with ten runs as for one with a million.
"""
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import joinedload

from webapp.auth.permissions import audit_query
from webapp.charts import Bar
from webapp.extensions import db
from webapp.models import AuditEvent, Run, RunStatus
from webapp.models.runs import ACTIVE_STATUSES, STATUS_LABELS
from webapp.scheduling import sync

TABS = {"information": "Information", "scheduling": "Scheduling", "executions": "Latest executions",
        "audit": "Audit", "charts": "Charts"}
DEFAULT_TAB = "information"
# The latest runs a tab reads at most: the Executions page holds the rest.
RUN_WINDOW = 1000
AUDIT_RUN_WINDOW = 500  # of which the audit tab shows the records
AUDIT_WINDOW = 1000
DURATION_RUNS = 50
RATE_DAYS = 30
EARLIEST_YEAR, LATEST_YEAR = 2000, 9998  # a date filter outside these is a typing slip
RUN_SORTS = {"id": Run.id, "created": Run.created_at, "status": Run.status, "started": Run.started_at}


def tab_of(value: str | None) -> str:
    return value if value in TABS else DEFAULT_TAB


# --- latest executions -----------------------------------------------------------------------

@dataclass
class RunFilter:
    """The executions tab's filters as typed, with what is wrong with them."""

    status: str = ""
    start: str = ""  # YYYY-MM-DD, inclusive
    end: str = ""  # YYYY-MM-DD, inclusive
    errors: dict = field(default_factory=dict)

    @property
    def args(self) -> dict:
        """The filters as query arguments (for links that keep them)."""
        return {key: value for key, value in (("status", self.status), ("from", self.start), ("to", self.end))
                if value}


def run_filter(args) -> RunFilter:
    """Read ?status=&from=&to=; an unknown status or a date that is not one is dropped with a message."""
    wanted = RunFilter()
    status = args.get("status", "")
    if status in STATUS_LABELS:
        wanted.status = status
    elif status:
        wanted.errors["status"] = "Unknown status: showing every status."
    for key, attr, label in (("from", "start", "From"), ("to", "end", "To")):
        text = args.get(key, "").strip()
        if not text:
            continue
        day = _date(text)
        if day is None:
            wanted.errors[key] = f"{label}: give a date as YYYY-MM-DD between {EARLIEST_YEAR} and {LATEST_YEAR}."
        else:
            setattr(wanted, attr, day.isoformat())
    if wanted.start and wanted.end and wanted.start > wanted.end:
        wanted.errors["to"] = "To is before From: no run can be in that range."
    return wanted


def _date(text: str) -> date | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if EARLIEST_YEAR <= day.year <= LATEST_YEAR and len(text) == 10 else None


def local_midnight(day: date) -> datetime:
    """The instant a server-time day begins (aware UTC)."""
    return datetime.combine(day, time(), tzinfo=sync.timezone()).astimezone(timezone.utc)


def job_runs_query(job_id: int, wanted: RunFilter):
    """The job's latest RUN_WINDOW runs that pass the filters, ready for paginate: the count and
    every sort read that window only."""
    ids = select(Run.id).where(Run.job_id == job_id)
    if wanted.status:
        ids = ids.where(Run.status == wanted.status)
    if wanted.start:
        ids = ids.where(Run.created_at >= local_midnight(date.fromisoformat(wanted.start)))
    if wanted.end:
        ids = ids.where(Run.created_at < local_midnight(date.fromisoformat(wanted.end) + timedelta(days=1)))
    window = ids.order_by(Run.id.desc()).limit(RUN_WINDOW)
    return select(Run).where(Run.id.in_(window)).options(joinedload(Run.requested_by))  # "Started by"


def has_active_run(job_id: int) -> bool:
    """A run of the job waits or runs: the executions tab keeps polling while one does."""
    return db.session.scalar(select(Run.id).where(Run.status.in_(ACTIVE_STATUSES), Run.job_id == job_id)
                             .limit(1)) is not None


def last_ran(job_id: int) -> Run | None:
    """The job's latest run that was not skipped, whoever started it (plan, hand, API, retry)."""
    return db.session.scalar(select(Run).where(Run.job_id == job_id, Run.status != RunStatus.SKIPPED)
                             .order_by(Run.id.desc()).limit(1).options(joinedload(Run.requested_by)))


# --- audit -----------------------------------------------------------------------------------

def job_audit_query(user, job_id: int):
    """The audit records `user` may read about the job and its latest AUDIT_RUN_WINDOW runs:
    the job's own records, those of its runs (cancel) and what its runs changed."""
    runs = select(Run.id).where(Run.job_id == job_id).order_by(Run.id.desc()).limit(AUDIT_RUN_WINDOW)
    about = or_(and_(AuditEvent.object_type == "job", AuditEvent.object_id == job_id),
                and_(AuditEvent.object_type == "run", AuditEvent.object_id.in_(runs)),
                AuditEvent.run_id.in_(runs))
    ids = audit_query(user).where(about).with_only_columns(AuditEvent.id).order_by(AuditEvent.id.desc()) \
        .limit(AUDIT_WINDOW)
    return select(AuditEvent).where(AuditEvent.id.in_(ids))


AUDIT_SORTS = {"at": AuditEvent.id}


# --- charts ----------------------------------------------------------------------------------

@dataclass
class DurationRow:
    run: Run
    seconds: float


def recent_durations(job_id: int) -> list[DurationRow]:
    """The job's last DURATION_RUNS runs that started and ended, oldest first."""
    runs = db.session.scalars(
        select(Run).where(Run.job_id == job_id, Run.started_at.is_not(None), Run.finished_at.is_not(None))
        .order_by(Run.id.desc()).limit(DURATION_RUNS)).all()
    return [DurationRow(run, max((run.finished_at - run.started_at).total_seconds(), 0)) for run in reversed(runs)]


def duration_bars(rows: list[DurationRow], href) -> tuple[list[Bar], str, float]:
    """Bars of the durations in seconds or minutes (whichever reads better), the unit and its size."""
    longest = max((row.seconds for row in rows), default=0)
    unit, size = ("min", 60.0) if longest >= 600 else ("s", 1.0)
    bars = [Bar(f"#{row.run.id}", [(row.run.status, row.seconds / size)], href(row.run)) for row in rows]
    return bars, unit, size


@dataclass
class Day:
    day: date
    counts: dict  # status -> runs created that day

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in (RunStatus.SUCCEEDED, RunStatus.WARNINGS, RunStatus.FAILED))

    @property
    def succeeded(self) -> int:
        return self.counts.get(RunStatus.SUCCEEDED, 0) + self.counts.get(RunStatus.WARNINGS, 0)

    @property
    def rate(self) -> float | None:
        """Percent of the runs that ended (succeeded or failed) that succeeded; None without any."""
        return 100.0 * self.succeeded / self.finished if self.finished else None


def daily_outcomes(job_id: int, today: date, days: int = RATE_DAYS) -> list[Day]:
    """Runs of the job per server-time day and status over the last `days` days (today last):
    one grouped query over the index range runs (job_id, created_at)."""
    first = today - timedelta(days=days - 1)
    bounds = [local_midnight(first + timedelta(days=k)) for k in range(days + 1)]
    bucket = case(*[(Run.created_at < bound, k) for k, bound in enumerate(bounds[1:])], else_=days)
    rows = db.session.execute(
        select(bucket.label("bucket"), Run.status, func.count())
        .where(Run.job_id == job_id, Run.created_at >= bounds[0], Run.created_at < bounds[-1])
        .group_by("bucket", Run.status)).all()
    result = [Day(first + timedelta(days=k), {}) for k in range(days)]
    for index, status, count in rows:
        if 0 <= index < days:
            result[index].counts[status] = count
    return result


# The success rate chart stacks each day's ended runs as shares of 100 %.
RATE_PARTS = (RunStatus.SUCCEEDED, RunStatus.WARNINGS, RunStatus.FAILED)


def rate_bars(days: list[Day]) -> list[Bar]:
    return [Bar(day.day.strftime("%d %b"),
                [(status, 100.0 * day.counts.get(status, 0) / day.finished if day.finished else 0)
                 for status in RATE_PARTS]) for day in days]
