"""What the dashboard shows, for what the user may see: runs in progress with their live
progress, the last 24 hours by status and by hour, the next planned fires, the latest failures.

Every query reads a bounded slice however long the history grows: runs in progress and waiting
through runs(status, job_id), the last 24 hours and the last week's failures as ranges of the
primary key (executions.queries.created_since), the next fires through jobs.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from redis.exceptions import RedisError
from sqlalchemy import func
from sqlalchemy.orm import contains_eager

from webapp.auth.permissions import jobs_query
from webapp.execution import livelog
from webapp.executions.queries import created_since, happened_by, visible_runs
from webapp.extensions import db, redis_client
from webapp.models import Job, JobState, Run, RunStatus
from webapp.models.runs import STATUS_LABELS

WINDOW = timedelta(hours=24)
LIVE_SHOWN = 20  # runs in progress listed; the rest are counted
NEXT_FIRES = 10
FAILURES = 10
# The latest failures by end time are picked among this many newest failures by id: a run ends
# later than a run created after it only by running longer, which the candidates allow for
# without reading every failure of the week (a failing job can leave thousands).
FAILURE_CANDIDATES = 100
FAILURES_WINDOW = timedelta(days=7)  # the latest failures are looked for in this window only
# The chart stacks the statuses a run ends in, bottom up, then those of runs not yet ended.
CHART_STATUSES = (RunStatus.SUCCEEDED, RunStatus.WARNINGS, RunStatus.FAILED, RunStatus.CANCELLED,
                  RunStatus.SKIPPED, RunStatus.IN_PROGRESS, RunStatus.QUEUED)


@dataclass
class LiveRun:
    run: Run
    percent: int
    message: str


def _with_job(query):
    """Each run with its job and the job's domain, loaded with the page of runs."""
    return query.outerjoin(Job.domain).options(contains_eager(Run.job).contains_eager(Job.domain))


def live_runs(user) -> list[LiveRun]:
    """Runs in progress, the longest running first, with progress from Redis when it is there
    (the database's last value when Redis is away)."""
    runs = db.session.scalars(_with_job(visible_runs(user)).where(Run.status == RunStatus.IN_PROGRESS)
                              .order_by(Run.started_at, Run.id).limit(LIVE_SHOWN)).all()
    return [LiveRun(run, *_progress(run)) for run in runs]


def _progress(run) -> tuple[int, str]:
    try:
        state = livelog.progress(redis_client.conn, run.id)
    except RedisError:
        state = {}
    try:
        percent = int(float(state.get("progress", run.progress)))
    except ValueError:
        percent = run.progress
    return max(0, min(100, percent)), state.get("message", run.progress_message)


def active_counts(user) -> dict[str, int]:
    """How many runs are in progress and how many wait, now."""
    query = (visible_runs(user).with_only_columns(Run.status, func.count())
             .where(Run.status.in_((RunStatus.IN_PROGRESS, RunStatus.QUEUED))).group_by(Run.status))
    counts = dict(db.session.execute(query).all())
    return {status: counts.get(status, 0) for status in (RunStatus.IN_PROGRESS, RunStatus.QUEUED)}


def _hour_of(column):
    """The UTC hour a stored time falls in, as text 'YYYY-MM-DDTHH' (times are stored as naive UTC)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, 'YYYY-MM-DD"T"HH24')
    return func.strftime("%Y-%m-%dT%H", column)


@dataclass
class LastDay:
    counts: list[tuple[str, str, int]]  # (status, label, runs created in the last 24 hours), every status
    hours: list[tuple[datetime, dict[str, int]]]  # the last 24 clock hours (UTC start), runs by status


def last_day(user, now: datetime) -> LastDay:
    """Runs created in the last 24 hours by status, and by clock hour and status: one query.

    Grouped by hour and status, so that no index can serve the grouping and the database reads
    the window through runs(created_at): grouped by status alone, SQLite would walk the whole
    of runs(status, job_id) instead, the history under the window included; the window is read
    as a range of ids (created_since). The chart's 24 bars start at a whole hour (the current
    one, so far, is the last), so runs of the window's first part-hour count in the totals but
    have no bar."""
    first = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    hour = _hour_of(Run.created_at)
    query = created_since(visible_runs(user).with_only_columns(hour, Run.status, func.count())
                          .where(happened_by(now)), now - WINDOW).group_by(hour, Run.status)
    totals: dict[str, int] = {}
    buckets = {first + timedelta(hours=n): {} for n in range(24)}
    for text, status, count in db.session.execute(query):
        totals[status] = totals.get(status, 0) + count
        start = datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
        if start in buckets:
            buckets[start][status] = count
    counts = [(status.value, label, totals.get(status, 0)) for status, label in STATUS_LABELS.items()]
    return LastDay(counts, list(buckets.items()))


def next_fires(user) -> list[Job]:
    """The next planned fires of the jobs the user may see, soonest first."""
    query = (jobs_query(user).outerjoin(Job.domain).options(contains_eager(Job.domain))
             .where(Job.state == JobState.ACTIVE, Job.next_fire_at.isnot(None))
             .order_by(Job.next_fire_at, Job.id).limit(NEXT_FIRES))
    return db.session.scalars(query).all()


def latest_failures(user, now: datetime) -> list[Run]:
    """The failed runs of the last 7 days that ended last, latest first: among the newest
    FAILURE_CANDIDATES failures by id (the window's ids, newest first, until that many are found,
    however many failures the history holds)."""
    query = created_since(_with_job(visible_runs(user)).where(Run.status + "" == RunStatus.FAILED),
                          now - FAILURES_WINDOW)
    candidates = db.session.scalars(query.order_by(Run.id.desc()).limit(FAILURE_CANDIDATES)).all()
    return sorted(candidates, key=lambda run: (run.finished_at or run.created_at, run.id), reverse=True)[:FAILURES]
