"""The envelopes page as queries (S4 "Monitoring jobs and envelopes"), callable without HTTP.

Everything is read through webapp.auth.permissions: envelopes through `envelopes_query`, runs through
`runs_query`, so a domain administrator's lists hold their projects' rows only. What may be done to an
envelope or a run is asked of webapp.linkage.chain (rollback_refusal, retry_refusal), the one place
that decides it; this module only says it in the page's words."""
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import contains_eager, selectinload

from webapp.auth.permissions import envelopes_query, projects_query, runs_query
from webapp.executions.actions import RETRYABLE
from webapp.extensions import db
from webapp.jobtypes.linkage import KEY, QUEUE
from webapp.linkage import chain
from webapp.models import Domain, Job, Run, RunStatus
from webapp.models.linkage import Envelope, EnvelopeNotification, EnvelopeStatus
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.settings import get_setting
from webapp.models.types import utcnow
from webapp.pagination import paginate

VIEWS = ("envelopes", "jobs")
ACTIVE_ENVELOPE = (EnvelopeStatus.SUCCESS_ACTIVE, EnvelopeStatus.ERRORS_ACTIVE)
ERRORED = (EnvelopeStatus.ERRORS, EnvelopeStatus.CORRUPT)
ERRORED_DAYS, ERRORED_MAX = 7, 10
PROCESSING_MAX = 20  # the panel lists this many; more are counted
MAX_OPEN = 50  # expanded rows a poll may ask for

# S4's job statuses, and "Queued" for a step that waits its turn: key -> (label, tooltip).
JOB_STATUSES = {
    "queued": ("Queued", "The job waits for its turn on the processing queue."),
    "success_active": ("Success (active)", "The job is running, and no errors have occurred."),
    "errors_active": ("Errors (active)", "The job is running, but errors have occurred."),
    "success": ("Success", "The job completed successfully."),
    "errors": ("Errors", "The job failed with an error, or was cancelled."),
}

ENVELOPE_SORTS = {
    "id": Envelope.id,
    "project": Domain.name,
    "name": Envelope.name,
    "uploaded": Envelope.uploaded_at,
    "records": Envelope.record_count,
    "size": Envelope.size,
    "status": Envelope.status,
}


def job_status(run: Run) -> str:
    """The S4 status key of a run: succeeded with warnings is a success; failed, cancelled and skipped
    are errors; a run in progress that has logged an error is "errors (active)"."""
    if run.status == RunStatus.QUEUED:
        return "queued"
    if run.status == RunStatus.IN_PROGRESS:
        return "errors_active" if run.error_count else "success_active"
    return "success" if run.status in chain.SUCCEEDED else "errors"


def parse_view(args) -> tuple[str, str]:
    """The view the URL names, and a problem to show when it names none we have."""
    view = args.get("view", "") or "envelopes"
    if view not in VIEWS:
        return "envelopes", "There is no such view: all envelopes are shown."
    return view, ""


def parse_ids(text: str) -> set[int]:
    """A comma-separated list of ids (the rows a poll keeps open); anything else is left out."""
    ids = set()
    for part in (text or "").split(",")[:MAX_OPEN]:
        part = part.strip()
        if part.isascii() and part.isdigit() and len(part) <= 10 and 0 < int(part) <= 2**31 - 1:
            ids.add(int(part))
    return ids


# --- envelopes ---------------------------------------------------------------------------------

def upload_projects(user) -> list[Domain]:
    return list(db.session.scalars(projects_query(user)))


def upload_limit_mb() -> int:
    return get_setting("envelope_max_mb")


def envelopes_page(user):
    """Every envelope the user sees, newest first (or as the URL sorts), paged."""
    query = envelopes_query(user).join(Envelope.project).options(contains_eager(Envelope.project))
    return paginate(query, ENVELOPE_SORTS, "id", default_direction="desc", tiebreak=Envelope.id.desc())


def processing_now(user) -> tuple[list[Envelope], int]:
    """Envelopes whose chain is running or waiting, oldest first (the order they are processed in),
    at most PROCESSING_MAX, and how many there are."""
    query = envelopes_query(user).where(Envelope.status.in_(ACTIVE_ENVELOPE))
    count = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.options(selectinload(Envelope.project)).order_by(Envelope.id)
                              .limit(PROCESSING_MAX)).all() if count else []
    return list(rows), count


def recently_errored(user, now=None) -> list[Envelope]:
    """Envelopes that ended with errors or were found corrupt in the last ERRORED_DAYS days, newest
    first, at most ERRORED_MAX."""
    since = (now or utcnow()) - timedelta(days=ERRORED_DAYS)
    query = (envelopes_query(user).where(Envelope.status.in_(ERRORED),
                                         func.coalesce(Envelope.finished_at, Envelope.uploaded_at) >= since)
             .options(selectinload(Envelope.project)).order_by(Envelope.id.desc()).limit(ERRORED_MAX))
    return list(db.session.scalars(query))


@dataclass
class EnvelopeRow:
    """One envelope as its row shows it: what may be done to it and why not."""
    envelope: Envelope
    rollback_refusal: str | None
    busy: bool  # a job of it (a step, or its rollback) waits or runs
    report_files: list
    notification_count: int = 0
    open: bool = False
    runs: list | None = None  # its jobs (RunRow), when the row is expanded

    @property
    def active(self) -> bool:
        return self.envelope.status in ACTIVE_ENVELOPE or self.busy

    @property
    def cancellable(self) -> bool:
        """Cancel is offered while its chain runs; a queued rollback is not a chain to cancel."""
        return self.busy and self.envelope.status in ACTIVE_ENVELOPE


def envelope_rows(envelopes: list[Envelope], open_ids=(), open_runs=()) -> list[EnvelopeRow]:
    """Rows for a page of envelopes: their runs in one query (report files with them); the runs of
    the expanded ones are listed under them."""
    ids = [envelope.id for envelope in envelopes]
    by_envelope, counts = {}, {}
    if ids:
        runs = db.session.scalars(select(Run).where(Run.envelope_id.in_(ids))
                                  .options(selectinload(Run.files), selectinload(Run.job)).order_by(Run.id))
        for run in runs:
            by_envelope.setdefault(run.envelope_id, []).append(run)
        counts = dict(db.session.execute(select(EnvelopeNotification.envelope_id, func.count())
                                         .where(EnvelopeNotification.envelope_id.in_(ids))
                                         .group_by(EnvelopeNotification.envelope_id)).all())
    rows = []
    for envelope in envelopes:
        runs = by_envelope.get(envelope.id, [])
        opened = envelope.id in open_ids
        rows.append(EnvelopeRow(envelope, chain.rollback_refusal(envelope, runs),
                                busy=any(run.status in ACTIVE_STATUSES for run in runs),
                                report_files=_report_files(runs), notification_count=counts.get(envelope.id, 0),
                                open=opened, runs=run_rows(runs, open_runs) if opened else None))
    return rows


def _report_files(runs: list[Run]) -> list:
    """The output files of the envelope's latest successful report step."""
    reports = [run for run in runs if chain.step_of(run) == "report" and run.status in chain.SUCCEEDED]
    return list(reports[-1].files) if reports else []


def notifications(envelope: Envelope, limit: int = 500) -> list[EnvelopeNotification]:
    return list(db.session.scalars(select(EnvelopeNotification).where(EnvelopeNotification.envelope_id == envelope.id)
                                   .order_by(EnvelopeNotification.id).limit(limit)))


# --- all jobs ----------------------------------------------------------------------------------

def _jobs_view(user):
    """Runs of the processing queue's job type and of system jobs, the user may see."""
    return (runs_query(user).outerjoin(Job.domain).where(or_(Job.job_type == KEY, Job.system.is_(True)))
            .options(contains_eager(Run.job).contains_eager(Job.domain)))


def jobs_page(user):
    """The All jobs view: by processing start, the newest first, with the waiting ones before all."""
    waiting_first = case((Run.status == RunStatus.QUEUED, 0), else_=1)
    started = func.coalesce(Run.started_at, Run.created_at)
    return paginate(_jobs_view(user), {"start": waiting_first}, "start", tiebreak=started.desc())


@dataclass
class RunRow:
    """One run as a row of the page shows it."""
    run: Run
    retry_refusal: str | None
    open: bool = False
    wide: bool = False  # the All jobs view: job and envelope columns too, and it polls itself

    @property
    def step(self) -> str:
        return chain.step_of(self.run) if self.run.job.job_type == KEY else ""

    @property
    def status(self) -> str:
        return job_status(self.run)

    @property
    def status_label(self) -> str:
        return JOB_STATUSES[self.status][0]

    @property
    def status_tooltip(self) -> str:
        return JOB_STATUSES[self.status][1]

    @property
    def active(self) -> bool:
        return self.run.status in ACTIVE_STATUSES


def retry_refusal(run: Run) -> str | None:
    """Why the run may not be retried here, or None: S4's guard for a step of an envelope's chain
    (chain.retry_refusal); for another job's run, the executions page's rule."""
    if run.job.job_type == KEY:
        return chain.retry_refusal(run)
    if run.status not in RETRYABLE:
        return "Only a failed or cancelled job can be retried."
    if not run.job.is_live:
        return "Its job is deleted."
    return None


def run_rows(runs, open_ids=(), wide=False) -> list[RunRow]:
    return [RunRow(run, retry_refusal(run), open=run.id in open_ids, wide=wide) for run in runs]


# --- the processing queue ------------------------------------------------------------------------

def queue_state(user):
    """The processing queue's state (paused by whom, why) and how many runs wait on it."""
    from webapp.queues.queries import statuses

    waiting = db.session.scalar(select(func.count()).select_from(Run).join(Run.job)
                                .where(Run.status == RunStatus.QUEUED, Job.job_type == KEY))
    return statuses(user, [QUEUE])[QUEUE], waiting
