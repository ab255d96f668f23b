"""Read model of the jobs list: find, status filter, type views and sorts, with each job's latest
run (a job's own runs are read by its page's tabs, webapp/jobs/tabs.py)."""
from datetime import date

from sqlalchemy import String, case, cast, func, or_, select
from sqlalchemy.orm import contains_eager

from webapp.auth.permissions import jobs_query
from webapp.extensions import db
from webapp.jobs import columns, typepages
from webapp.jobs.columns import NullsLast
from webapp.jobs.finding import FIND_MAX, fire_time_clause, like_pattern
from webapp.jobtypes import registry
from webapp.models import Dataset, Domain, Job, LogRead, Run, RunStatus
from webapp.models.runs import ACTIVE_STATUSES
from webapp.presenters import declared_list_columns

NEVER = "never"  # the status filter of jobs that never ran
# The status filter's toggles, in the order they are shown; a job's status is its latest run's.
STATUS_FILTERS = (RunStatus.IN_PROGRESS, RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.WARNINGS,
                  RunStatus.FAILED, RunStatus.CANCELLED, NEVER)
# Sorting by status puts what needs a look first: failures, then warnings, cancels, what is
# running or waiting, successes; jobs that never ran come last either way.
_STATUS_RANK = {RunStatus.FAILED: 1, RunStatus.WARNINGS: 2, RunStatus.CANCELLED: 3, RunStatus.IN_PROGRESS: 4,
                RunStatus.QUEUED: 5, RunStatus.SUCCEEDED: 6}


def latest_runs(job_ids) -> dict[int, Run]:
    """The latest run that did something (skips excluded) of each job: Job.last_run_id, kept by
    dispatch, so one primary-key lookup per job."""
    if not job_ids:
        return {}
    latest = select(Job.last_run_id).where(Job.id.in_(job_ids), Job.last_run_id.isnot(None))
    return {run.job_id: run for run in db.session.scalars(select(Run).where(Run.id.in_(latest)))}


def _unread_first(user):
    """0 while the job's latest run has log lines `user` has not read (reads.is_unread), 1 once
    read, NULL for a job that never ran: the same one seek per job as the status, with the
    user's read mark of that run beside it."""
    unread = case((LogRead.lines_read.is_(None), case((or_(Run.line_count > 0, Run.status.in_(ACTIVE_STATUSES)), 0),
                                                      else_=1)),
                  (Run.line_count > LogRead.lines_read, 0), else_=1)
    return (select(unread).select_from(Run)
            .outerjoin(LogRead, (LogRead.run_id == Run.id) & (LogRead.user_id == user.id))
            .where(Run.id == Job.last_run_id).correlate(Job).scalar_subquery())


def job_sorts(user, view_columns=()) -> dict:
    """Every column of the list, by the key its header puts in ?sort=: those of every view
    (type, execution, domain) and those of the view shown (`view_columns`, webapp/jobs/columns.py)."""
    plan_kind = Job.plan["kind"].as_string()
    return {
        "status": NullsLast(case(_STATUS_RANK, value=Job.last_status)),
        "log": NullsLast(_unread_first(user)),
        "name": Job.name,
        **{column.key: column.sort(user) for column in (*columns.DEFAULT, *view_columns)},
        # By kind; a disabled plan has no schedule and counts as empty.
        "plan": NullsLast(case((plan_kind == "disabled", None), else_=plan_kind)),
        "previous": NullsLast(Job.prev_fire_at),
        "next": NullsLast(Job.next_fire_at),
    }


def list_query(user, find: str = "", statuses=(), *, zone, today: date):
    """The jobs the user may see, found by `find`, with their latest status in `statuses` (none:
    any), joined to their domains (a column, a sort and the find box read it)."""
    query = jobs_query(user).outerjoin(Job.domain)
    if find:
        query = query.where(find_clause(find, zone, today))
    if statuses:
        query = query.where(status_clause(statuses))
    return query


def of_type(query, job_type: str = ""):
    """A list_query's page rows: of `job_type` (empty: any), each with its domain loaded."""
    query = query.options(contains_eager(Job.domain))
    return query.where(Job.job_type == job_type) if job_type else query


def type_counts(query) -> dict[str, int]:
    """How many jobs of each type a list_query holds: one query."""
    counts = query.with_only_columns(Job.job_type, func.count(), maintain_column_froms=True).group_by(Job.job_type)
    return dict(db.session.execute(counts).all())


def find_clause(find: str, zone, today: date):
    """Name, description, domain (name or OID), job type (key or label), dataset (its name), the
    parameters type views show, the plan's kind and period (daily, weekly, monthly, hours ...),
    or a fire time typed as a date or time; % and _ are literal."""
    text = find.strip()[:FIND_MAX]
    like = like_pattern(text)
    found = [Job.name.ilike(like, escape="\\"), Job.description.ilike(like, escape="\\"),
             Domain.name.ilike(like, escape="\\"), Domain.oid.ilike(like, escape="\\"),
             Job.job_type.ilike(like, escape="\\")]
    by_label = [jt.key for jt in registry.all_types() if text.lower() in jt.label.lower()]
    if by_label:
        found.append(Job.job_type.in_(by_label))
    shown = {key for jt in registry.all_types() for key, _ in declared_list_columns(jt)} | typepages.find_params()
    for key in sorted({"dataset"} | shown):
        found.append(Job.params[key].as_string().ilike(like, escape="\\"))
    found.append(columns.param_text("dataset").in_(
        select(cast(Dataset.id, String)).where(Dataset.name.ilike(like, escape="\\"))))
    for key in ("kind", "repeat", "unit"):
        found.append(Job.plan[key].as_string().ilike(like, escape="\\"))
    when = fire_time_clause(text, (Job.prev_fire_at, Job.next_fire_at), zone, today)
    if when is not None:
        found.append(when)
    return or_(*found)


def status_clause(statuses):
    """The job's latest run (skips excluded) has one of `statuses`; NEVER: it has none. A column
    of the job (Job.last_status), so the filter is an index seek, not a look at each job's runs."""
    wanted = [status for status in statuses if status != NEVER]
    clause = Job.last_status.in_(wanted) if wanted else None
    if NEVER in statuses:
        clause = Job.last_status.is_(None) if clause is None else or_(clause, Job.last_status.is_(None))
    return clause
