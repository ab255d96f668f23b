"""What both faces of the console, the pages and the API, show of a job beyond its stored
columns: its type's label, whether it is broken (no installed job type has its key), its plan
in words and its next fire times.

One module, so that a page and an API answer never tell a job differently, and neither face
imports the other's views to say it. Nothing here reads the database: a list calls these for
every row at no query cost.
"""
from datetime import datetime

from webapp.jobtypes import registry
from webapp.scheduling import sync
from webapp.scheduling.plans import PlanError, upcoming

INVALID_PLAN = "invalid plan"


def job_type(job) -> registry.JobType | None:
    """The job's installed type, or None when the job is broken."""
    try:
        return registry.get(job.job_type)
    except registry.UnknownJobType:
        return None


def is_broken(job) -> bool:
    """No installed job type has the job's key (renamed in an upgrade, or its module dropped):
    its runs fail until the type is installed again."""
    return not registry.is_known(job.job_type)


def type_label(job) -> str:
    """The label of the job's type, or its stored key when no installed type has it."""
    installed = job_type(job)
    return installed.label if installed is not None else job.job_type


def describe_plan(job) -> str:
    """The job's plan in words ("daily Mon, Wed, Fri at 02:30")."""
    try:
        return sync.job_plan(job).describe()
    except (PlanError, registry.UnknownJobType):
        return INVALID_PLAN


def upcoming_fires(job, count: int = 5) -> list[datetime]:
    """The next `count` fire times, starting with the one rq-scheduler holds; none for a job
    that is not on its plan."""
    if not job.schedulable or job.next_fire_at is None:
        return []
    try:
        return [job.next_fire_at] + upcoming(sync.job_plan(job), job.next_fire_at, sync.timezone(), count - 1)
    except (PlanError, registry.UnknownJobType):
        return [job.next_fire_at]
