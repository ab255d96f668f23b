"""The executions list as a query: every run the user may see, filtered by what the URL says.

The list must stay quick at a million runs, so:
- the default order is the newest run first by id, which the primary key serves by a seek (ids
  are handed out as runs are created, so this is creation order: a run that waits behind
  another starts later than its id says, never before it);
- the total is counted with the same filters but stops at COUNT_CAP rows ("more than 1,000"),
  so no page counts the whole history;
- another order (job, status, start) is applied only when no more than COUNT_CAP runs match:
  no index serves it, and sorting the whole history would take seconds;
- a date range becomes a range of ids too (the first run created in it, found through
  runs(created_at)), so the primary key reads only the window, newest first.
"""
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.orm import contains_eager, joinedload

from webapp.auth.permissions import domains_for_new_jobs, job_types_for, runs_query, sees_installation_jobs
from webapp.extensions import db
from webapp.guards import MAX_ID
from webapp.models import Domain, Job, Run, RunStatus, Trigger
from webapp.models.runs import STATUS_LABELS
from webapp.models.types import utcnow
from webapp.presenters import TRIGGER_LABELS

COUNT_CAP = 1_000  # counting 10,000 matches took 50-80 ms at 1M runs; 1,000 about a tenth
TEXT_MAX = 200  # a find or job text longer than any name it could match is cut here
INSTALLATION = "installation"  # the domain filter's value for jobs run by installation
PERIODS = {"1h": ("Last hour", timedelta(hours=1)), "24h": ("Last 24 hours", timedelta(hours=24)),
           "7d": ("Last 7 days", timedelta(days=7)), "30d": ("Last 30 days", timedelta(days=30))}
_RUN_ID = re.compile(r"#?([1-9][0-9]{0,9})")
# Runs are numbered as they are created, but two processes may commit a moment out of order:
# the id range of a time window starts this many ids early (its times are checked as well).
ID_MARGIN = 1000

SORTS = {
    "id": Run.id,
    "job": Job.name,
    "status": Run.status,
    "created": Run.created_at,
    "started": Run.started_at,
    "finished": Run.finished_at,
}
SORT_LABELS = {"job": "job", "status": "status", "created": "creation", "started": "start", "finished": "end"}


@dataclass
class Filters:
    """The list's filters as the URL gives them, each checked: a value that cannot apply is
    dropped and named in `problems`, never an error page."""
    job: str = ""
    job_type: str = ""
    domain: str = ""
    statuses: list[str] = field(default_factory=list)
    trigger: str = ""
    period: str = ""
    date_from: date | None = None
    date_to: date | None = None
    find: str = ""
    problems: list[str] = field(default_factory=list)

    def as_args(self) -> dict:
        """The filters as URL parameters (for sort headers, pager and links)."""
        args = {"job": self.job, "type": self.job_type, "domain": self.domain, "status": self.statuses,
                "trigger": self.trigger, "period": self.period, "from": _iso(self.date_from),
                "to": _iso(self.date_to), "q": self.find}
        return {key: value for key, value in args.items() if value}

    @property
    def active(self) -> bool:
        return bool(self.as_args())


def _iso(day: date | None) -> str:
    return day.isoformat() if day else ""


def _text(args, name) -> str:
    return " ".join(args.get(name, "").split())[:TEXT_MAX]


def _day(args, name, problems) -> date | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10]) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 9998:
        problems.append(f"“{value[:40]}” is not a date (year-month-day, such as 2026-11-22): ignored.")
        return None
    return day


def parse_filters(args) -> Filters:
    """Filters from the query string; anything unknown or malformed is left out and said."""
    problems = []
    known_status = {s.value for s in RunStatus}
    statuses = [s for s in dict.fromkeys(args.getlist("status")) if s]
    if any(s not in known_status for s in statuses):
        problems.append("Unknown status ignored.")
        statuses = [s for s in statuses if s in known_status]
    trigger = args.get("trigger", "")
    if trigger and trigger not in {t.value for t in Trigger}:
        problems.append("Unknown trigger ignored.")
        trigger = ""
    period = args.get("period", "")
    if period and period not in PERIODS:
        problems.append("Unknown period ignored.")
        period = ""
    filters = Filters(job=_text(args, "job"), job_type=_text(args, "type"), domain=_text(args, "domain"),
                      statuses=statuses, trigger=trigger, period=period,
                      date_from=_day(args, "from", problems), date_to=_day(args, "to", problems),
                      find=_text(args, "q"), problems=problems)
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        problems.append("The “from” date is after the “to” date: they were swapped.")
        filters.date_from, filters.date_to = filters.date_to, filters.date_from
    return filters


def _like(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere, with % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _run_id(text: str) -> int | None:
    match = _RUN_ID.fullmatch(text)
    return int(match.group(1)) if match and int(match.group(1)) <= MAX_ID else None


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(current_app.config["TIMEZONE"]))


def visible_runs(user):
    """permissions.runs_query, with a hint for SQLite's planner. SQLite keeps no statistics
    (the app never runs ANALYZE), so for a user who sees some domains it starts from their
    jobs, reads every run of each and sorts them all: seconds at a million runs. likely() says
    the visibility test passes for most rows, so it walks runs newest first and stops at the
    page's end instead. The clause is runs_query's own; likely(x) is x."""
    query = runs_query(user)
    if db.session.get_bind().dialect.name != "sqlite":
        return query
    return select(Run).join(Run.job).where(func.likely(query.whereclause))


def created_since(query, since: datetime):
    """Runs created at `since` or later, read as a range of the primary key.

    Also takes the status out of index use (status || ''): with an equality on status SQLite
    would read every run of that status in the history; within a window the range is smaller."""
    first = (select(Run.id).where(Run.created_at >= since).order_by(Run.created_at, Run.id).limit(1)
             .scalar_subquery())
    return query.where(Run.created_at >= since, Run.id >= first - ID_MARGIN)


def happened_by(now: datetime):
    """Runs that happened by `now`: a skipped occurrence counts from its fire time, not from when
    somebody skipped it ahead of time (its row is created then). For windows that end now: the
    last 24 hours of the dashboard and of this list."""
    return or_(Run.status + "" != RunStatus.SKIPPED, Run.occurrence_at.is_(None), Run.occurrence_at <= now)


def executions_query(user, filters: Filters, now=None):
    """The runs `user` may see that pass `filters`, each with its job, domain and requester loaded."""
    query = (visible_runs(user).outerjoin(Job.domain)
             .options(contains_eager(Run.job).contains_eager(Job.domain), joinedload(Run.requested_by)))
    if filters.job:
        job_id = _run_id(filters.job)
        query = query.where(Job.id == job_id if job_id else Job.name.ilike(_like(filters.job), escape="\\"))
    if filters.job_type:
        query = query.where(Job.job_type == filters.job_type)
    if filters.domain == INSTALLATION:
        query = query.where(Job.domain_id.is_(None))
    elif filters.domain:
        query = query.where(Domain.name == filters.domain)
    since = max(filter(None, [(now or utcnow()) - PERIODS[filters.period][1] if filters.period else None,
                              _local_midnight(filters.date_from) if filters.date_from else None]), default=None)
    if filters.statuses:
        # In a window the id range reads fewer rows than the status index (see created_since).
        status = Run.status + "" if since else Run.status
        query = query.where(status.in_(filters.statuses))
    if filters.trigger:
        query = query.where(Run.trigger == filters.trigger)
    if since:
        query = created_since(query, since)
    if filters.period:
        query = query.where(happened_by(now or utcnow()))
    if filters.date_to:
        query = query.where(Run.created_at < _local_midnight(filters.date_to + timedelta(days=1)))
    if filters.find:
        like = _like(filters.find)
        found = [Job.name.ilike(like, escape="\\"), Run.message.ilike(like, escape="\\")]
        run_id = _run_id(filters.find)
        if run_id:
            found.append(Run.id == run_id)
        query = query.where(or_(*found))
    return query


def filter_choices(user) -> dict:
    """What the filter form offers: the job types and domains the user may see, statuses, triggers."""
    domains = [(d.name, d.name) for d in db.session.scalars(domains_for_new_jobs(user))]
    return {
        "job_types": sorted(((t.key, t.label) for t in job_types_for(user)), key=lambda item: item[1].lower()),
        "domains": domains,
        "installation": sees_installation_jobs(user),
        "statuses": [(status.value, label) for status, label in STATUS_LABELS.items()],
        "triggers": [(trigger.value, label) for trigger, label in TRIGGER_LABELS.items()],
        "periods": [(key, label) for key, (label, _) in PERIODS.items()],
    }


def sorts_for(query, wanted: str) -> tuple[dict, str]:
    """The orders the list may use for `query`, and why one asked for is refused: an order no
    index serves only when at most COUNT_CAP runs match (one bounded count, asked for only then)."""
    if wanted not in SORTS or wanted == "id":
        return SORTS, ""
    matching = db.session.scalar(select(func.count()).select_from(query.limit(COUNT_CAP + 1).subquery()))
    if matching <= COUNT_CAP:
        return SORTS, ""
    return {"id": Run.id}, (f"More than {COUNT_CAP:,} runs match, so they are shown in run order: sorting them "
                            f"by {SORT_LABELS.get(wanted, wanted)} needs {COUNT_CAP:,} or fewer. Narrow the filters (a date range, say).")
