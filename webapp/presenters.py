"""What both faces of the console, the pages and the API, show of a job beyond its stored
columns: its type's label, whether it is broken (no installed job type has its key), its plan
in words and its next fire times.

One module, so that a page and an API answer never tell a job differently, and neither face
imports the other's views to say it. Nothing here reads the database: a list calls these for
every row at no query cost.
"""
from datetime import datetime

from webapp.jobtypes import registry
from webapp.models.runs import RunStatus, Trigger
from webapp.scheduling import sync
from webapp.scheduling.plans import PlanError, upcoming

INVALID_PLAN = "invalid plan"
TRIGGER_LABELS = {Trigger.PLAN: "Plan", Trigger.HAND: "By hand", Trigger.API: "API", Trigger.CLI: "Command line",
                  Trigger.RETRY: "Retry", Trigger.ENVELOPE: "Envelope"}
INSTALLATION_LABEL = "Installation"


def trigger_label(run) -> str:
    """Who or what started the run, as every page says it: "By hand · alice", "Plan"; an
    occurrence someone skipped: "Skipped by alice"."""
    user = run.requested_by.username if run.requested_by is not None else None
    if run.status == RunStatus.SKIPPED and user:
        return f"Skipped by {user}"
    label = TRIGGER_LABELS.get(run.trigger, str(run.trigger))
    return f"{label} · {user}" if user else label


def domain_label(job) -> str:
    """The job's domain as every list says it: its name, or "Installation" for a job run by
    installation (it has no domain)."""
    return job.domain.name if job.domain is not None else INSTALLATION_LABEL


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


LIST_COLUMNS_MAX = 2  # parameters a type view shows when its type declares no columns


def declared_list_columns(job_type: registry.JobType | None) -> list[tuple[str, str]]:
    """(parameter key, label) of the columns a job type declares for its view of the jobs list:
    `extra={"list_columns": [("directory", "Directory"), ...]}` (an import job's directory)."""
    if job_type is None:
        return []
    return [(str(key), str(label)) for key, label in job_type.extra.get("list_columns", ())]


def list_columns(job_type: registry.JobType | None) -> list[tuple[str, str]]:
    """The extra columns of a job type's view of the jobs list: those it declares, else its
    first parameters, by their form labels."""
    if job_type is None:
        return []
    declared = declared_list_columns(job_type)
    if declared:
        return declared
    fields = job_type.params().fields
    return [(name, field.metadata.get("label", name.replace("_", " ").capitalize()))
            for name, field in list(fields.items())[:LIST_COLUMNS_MAX]]


def list_values(job) -> dict[str, str]:
    """A job's parameters as the cells of its type's view show them: with its type's defaults
    filled in (what it runs with), or as stored when they no longer load."""
    stored = dict(job.params or {})
    installed = job_type(job)
    try:
        values = installed.load_params(stored) if installed is not None else stored
    except registry.InvalidArguments:
        values = stored
    return {key: _cell(value) for key, value in values.items()}


def _cell(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def previous_fire(job, latest_run) -> datetime | None:
    """When the job last ran, whoever started it (its plan, a person, the API): the later of the
    fire time its plan recorded and the time its latest run was asked for."""
    asked = None if latest_run is None else (latest_run.occurrence_at or latest_run.created_at)
    times = [t for t in (job.prev_fire_at, asked) if t is not None]
    return max(times) if times else None
