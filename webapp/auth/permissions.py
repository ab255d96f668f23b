"""The one place that decides what a user may see and do.

Every view, API call, download and log stream asks these functions; they answer with
queries (so a list never holds a row its reader may not see) and with 404 for an id the
user may not see, so a guessed id reveals nothing.
"""
from flask import abort
from sqlalchemy import false, or_, select

from webapp.extensions import db
from webapp.models import Domain, Job, Role, Run, RunFile, Scope


def visible_domain_ids(user) -> set[int] | None:
    """Domains whose jobs the user sees; None means every domain."""
    if user.role == Role.SUPERADMIN:
        return None
    roots = {d.id for d in user.supervised}
    if user.domain_id is not None:
        roots.add(user.domain_id)
    return Domain.subtree_ids(roots) if roots else set()


def sees_installation_jobs(user) -> bool:
    return user.role in (Role.SUPERADMIN, Role.SYSADMIN, Role.SYSTEM)


def job_filter(user):
    """A WHERE clause on Job for the jobs the user may see."""
    domains = visible_domain_ids(user)
    if domains is None:
        return Job.id.isnot(None)
    clauses = [Job.domain_id.in_(domains)] if domains else []
    if sees_installation_jobs(user):
        clauses.append(Job.scope == Scope.INSTALLATION)
    return or_(*clauses) if clauses else false()


def jobs_query(user):
    """Live (not deleted) jobs the user may see."""
    return Job.live().where(job_filter(user))


def runs_query(user):
    return select(Run).join(Run.job).where(job_filter(user))


def files_query(user):
    return select(RunFile).join(RunFile.job).where(job_filter(user))


def get_job_or_404(user, job_id):
    job = db.session.scalar(jobs_query(user).where(Job.id == job_id))
    if job is None:
        abort(404, description="No such job.")
    return job


def get_run_or_404(user, run_id, job_id=None):
    query = runs_query(user).where(Run.id == run_id)
    if job_id is not None:
        query = query.where(Run.job_id == job_id)
    run = db.session.scalar(query)
    if run is None:
        abort(404, description="No such run.")
    return run


def get_file_or_404(user, file_id):
    file = db.session.scalar(files_query(user).where(RunFile.id == file_id))
    if file is None:
        abort(404, description="No such file.")
    return file


def domains_for_new_jobs(user):
    """Domains the user may create or move a job into."""
    domains = visible_domain_ids(user)
    query = select(Domain).order_by(Domain.name)
    return query if domains is None else query.where(Domain.id.in_(domains or {-1}))
