"""Read models for the job pages: the list with each job's latest run, a job's runs."""
from sqlalchemy import or_, select
from sqlalchemy.orm import contains_eager, joinedload

from webapp.auth.permissions import jobs_query, runs_query
from webapp.extensions import db
from webapp.models import Domain, Job, Run, RunStatus


def latest_runs(job_ids) -> dict[int, Run]:
    """The latest run that did something (skips excluded) of each job."""
    if not job_ids:
        return {}
    # One index seek per job on runs (job_id, id), newest first, stopping at the first run that
    # was not skipped: a max() over the job's runs would read its whole history.
    newest = (select(Run.id).where(Run.job_id == Job.id, Run.status != RunStatus.SKIPPED)
              .order_by(Run.id.desc()).limit(1).correlate(Job).scalar_subquery())
    latest = select(newest).select_from(Job).where(Job.id.in_(job_ids))
    return {run.job_id: run for run in db.session.scalars(select(Run).where(Run.id.in_(latest)))}


def job_list_query(user, find: str = ""):
    query = jobs_query(user).outerjoin(Job.domain).options(contains_eager(Job.domain))  # each row shows its domain
    if find:
        like = f"%{find.strip()}%"
        query = query.where(or_(Job.name.ilike(like), Job.description.ilike(like), Domain.name.ilike(like),
                                Job.job_type.ilike(like)))
    return query


JOB_SORTS = {
    "name": Job.name,
    "type": Job.job_type,
    "scope": Job.scope,
    "domain": Domain.name,
    "previous": Job.prev_fire_at,
    "next": Job.next_fire_at,
}


def job_runs_query(user, job_id, status: str = ""):
    query = runs_query(user).where(Run.job_id == job_id).options(joinedload(Run.requested_by))  # "Started by"
    if status in {s.value for s in RunStatus}:
        query = query.where(Run.status == status)
    return query


RUN_SORTS = {"id": Run.id, "created": Run.created_at, "status": Run.status, "started": Run.started_at}
