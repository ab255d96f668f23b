"""An envelope's chain (SPEC 9, S4): validate → load → match → group → report, each step a run of the
project's processing job (job type `linkage.step`, serial `processing` queue), plus rollback.

- `start` queues the five steps together when the envelope is uploaded: the serial queue runs the
  oldest waiting run first, so an envelope is processed whole, and envelopes in upload order.
- Each step checks before it works that the envelope still wants it (not cancelled, corrupt or
  rolled back; the step before succeeded): a step that should not run ends cancelled, saying why.
- `after_step` (a finish hook) keeps the chain: a failed validate makes the envelope Corrupt; a
  failed or cancelled step cancels the envelope's later steps; and the envelope's status follows
  its runs. A retry queues the failed step again with every later one.
- `retry_refusal` is S4's retry guard: a failed step may be retried only while no other run has
  run against the project since.
"""
import logging
import re
from importlib import import_module

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.execution import dispatch, lifecycle
from webapp.execution.context import RunCancelled
from webapp.extensions import db
from webapp.jobtypes.linkage import KEY, ROLLBACK, STEPS
from webapp.models import Domain, Job, JobState, Run, RunStatus, Scope, Trigger
from webapp.models.audit import record
from webapp.models.linkage import (FINAL_ENVELOPE_STATUSES, Envelope, EnvelopeNotification, EnvelopeStatus,
                                   LINKAGE_KIND)
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.types import utcnow

log = logging.getLogger(__name__)

# Where each step's work is: "module:function", each called as function(ctx, envelope).
STEP_FUNCTIONS = {
    "validate": "webapp.linkage.ingest:validate",
    "load": "webapp.linkage.ingest:load",
    "match": "webapp.linkage.steps:match",
    "group": "webapp.linkage.steps:group",
    "report": "webapp.linkage.report:report",
    ROLLBACK: "webapp.linkage.rollback:rollback",
}
SUCCEEDED = (RunStatus.SUCCEEDED, RunStatus.WARNINGS)


class StepFailed(Exception):
    """A step that cannot do its work: its run fails with this message (a Corrupt envelope, for
    validate). What it wrote is rolled back."""


class ChainRefused(Exception):
    """An action on an envelope or a step that its state does not allow (the message says why)."""


# --- the project's processing job ----------------------------------------------------------------

def is_project(domain: Domain | None) -> bool:
    return domain is not None and domain.kind == LINKAGE_KIND


def job_name(project: Domain) -> str:
    return f"{project.name}: envelope processing"


def project_job(project: Domain) -> Job:
    """The job whose runs are the project's steps: made on first use, a system job (its name and
    type are the code's; it has no plan), in the project's domain, so its runs are seen by exactly
    those who see the project."""
    query = Job.live().where(Job.job_type == KEY, Job.domain_id == project.id)
    job = db.session.scalar(query)
    if job is not None:
        return job
    job = Job(name=job_name(project), job_type=KEY, scope=Scope.DOMAIN, domain_id=project.id, system=True,
              state=JobState.ACTIVE, plan={"kind": "disabled"}, params={},
              description=f"The validate, load, match, group, report and rollback steps of {project.name}'s envelopes.")
    db.session.add(job)
    try:
        db.session.commit()
    except IntegrityError:  # made meanwhile by another upload
        db.session.rollback()
        job = db.session.scalar(query)
    return job


def args_of(step: str, envelope_id: int) -> str:
    return f"step={step} envelope={envelope_id}"


def step_of(run: Run) -> str:
    """The step a run of the processing job does, read from its arguments ("" if none)."""
    match = re.search(r"(?:^|\s)step=(\w+)", run.args or "")
    return match.group(1) if match else ""


# --- starting, cancelling, retrying, rolling back ------------------------------------------------

def start(envelope: Envelope, user) -> list[Run]:
    """Queue the envelope's five steps, in order."""
    job = project_job(envelope.project)
    return [dispatch.request_run(job, trigger=Trigger.ENVELOPE, user=user, args=args_of(step, envelope.id),
                                 envelope_id=envelope.id) for step in STEPS]


def runs_of(envelope_id: int) -> list[Run]:
    return list(db.session.scalars(select(Run).where(Run.envelope_id == envelope_id).order_by(Run.id)))


def cancel(envelope: Envelope, user, reason: str = "") -> int:
    """Cancel the envelope: its waiting steps are cancelled, a running one is asked to stop, and it
    is Cancelled. Returns how many runs were cancelled or asked to stop."""
    if envelope.status in FINAL_ENVELOPE_STATUSES:
        raise ChainRefused(f"The envelope is {envelope.status_label.lower()} already.")
    active = [run for run in runs_of(envelope.id) if run.status in ACTIVE_STATUSES]
    if not active:
        raise ChainRefused("Its chain has ended: there is nothing left to cancel.")
    before = envelope.status
    envelope.status = EnvelopeStatus.CANCELLED
    envelope.reason = reason or f"Cancelled by {getattr(user, 'username', 'the system')}."
    envelope.finished_at = utcnow()
    record("cancel", "envelope", envelope, actor=user, before={"status": before},
           after={"status": envelope.status, "runs": [run.id for run in active]})
    db.session.commit()
    for run in active:
        db.session.refresh(run)
        lifecycle.cancel_run(run, user)
    return len(active)


def retry_refusal(run: Run) -> str | None:
    """Why this run may not be retried (S4's guard), or None if it may: only a failed or cancelled
    step of an envelope that is not cancelled or rolled back, not retried already, and only while
    no other run has started against the same project since it ended."""
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        return "Only a failed or cancelled job can be retried."
    retried = db.session.scalar(select(Run.id).where(Run.retry_of_id == run.id).limit(1))
    if retried is not None:
        return f"It was retried already, as job #{retried}."
    if run.envelope_id is not None:
        envelope = db.session.get(Envelope, run.envelope_id)
        if envelope.status in (EnvelopeStatus.CANCELLED, EnvelopeStatus.ROLLED_BACK):
            return f"Its envelope is {envelope.status_label.lower()}."
        step = step_of(run)
        if step == ROLLBACK:
            return "A rollback is asked for again with Rollback, not retried."
        if step in STEPS[1:]:
            before = STEPS[STEPS.index(step) - 1]
            if _latest_status(run.envelope_id, before) not in SUCCEEDED:
                return f"The {before} step before it did not succeed: retry that one."
    since = db.session.scalar(select(Run.id).where(
        Run.job_id == run.job_id, Run.id != run.id, Run.started_at.isnot(None),
        Run.started_at >= (run.finished_at or run.created_at)).order_by(Run.id).limit(1))
    if since is not None:
        return f"Job #{since} has run against this project since; retrying could undo its work."
    return None


def retry(run: Run, user) -> Run:
    """A new run of the same step (S4 "Retry"), and of each later step of its envelope, which were
    cancelled when it failed: the chain goes on from there. Retries go before the runs waiting on
    the serial queue (queues.next_for_serial), so the envelope is finished before the next one."""
    refusal = retry_refusal(run)
    if refusal:
        raise ChainRefused(refusal)
    job = db.session.get(Job, run.job_id)
    again = dispatch.request_run(job, trigger=Trigger.RETRY, user=user, args=run.args, retry_of=run,
                                 envelope_id=run.envelope_id)
    step = step_of(run)
    if run.envelope_id is not None and step in STEPS:
        for later in STEPS[STEPS.index(step) + 1:]:
            args = args_of(later, run.envelope_id)
            cancelled = db.session.scalar(select(Run).where(Run.envelope_id == run.envelope_id, Run.args == args)
                                          .order_by(Run.id.desc()).limit(1))
            dispatch.request_run(job, trigger=Trigger.RETRY, user=user, args=args, retry_of=cancelled,
                                 envelope_id=run.envelope_id)
        refresh_status(db.session.get(Envelope, run.envelope_id))
    return again


def rollback_refusal(envelope: Envelope, runs: list[Run] | None = None) -> str | None:
    """Why the envelope may not be rolled back now, or None. `runs`: its runs, if the caller has
    them (a page of envelopes reads them all in one query)."""
    if envelope.status == EnvelopeStatus.ROLLED_BACK:
        return "It is rolled back already."
    if envelope.status == EnvelopeStatus.CORRUPT:
        return "A corrupt envelope loaded nothing: there is nothing to roll back."
    if any(run.status in ACTIVE_STATUSES for run in (runs if runs is not None else runs_of(envelope.id))):
        return "Its chain is still running: wait for it to end, or cancel it first."
    if not envelope.record_count:  # set by load (a cancelled chain may never have loaded)
        return "It loaded no records: there is nothing to roll back."
    return None


def request_rollback(envelope: Envelope, user) -> Run:
    """Queue the rollback of the envelope: a run on the processing queue like any step."""
    refusal = rollback_refusal(envelope)
    if refusal:
        raise ChainRefused(refusal)
    record("rollback", "envelope", envelope, actor=user, before={"status": envelope.status},
           after={"status": "rollback queued"})
    db.session.commit()
    return dispatch.request_run(project_job(envelope.project), trigger=Trigger.ENVELOPE, user=user,
                                args=args_of(ROLLBACK, envelope.id), envelope_id=envelope.id)


# --- running a step ---------------------------------------------------------------------------------

def run_step(ctx, step: str, envelope_id: int):
    """The job type's work: check the envelope still wants this step, then do it."""
    envelope = db.session.get(Envelope, envelope_id)
    if envelope is None:
        raise StepFailed(f"There is no envelope #{envelope_id}.")
    reason = why_not(envelope, step)
    if reason:
        ctx.info(reason)
        raise RunCancelled(reason)
    ctx.info(f"{step.capitalize()}: envelope #{envelope.id} “{envelope.name}” of {envelope.project.name}.")
    module, _, name = STEP_FUNCTIONS[step].partition(":")
    try:
        getattr(import_module(module), name)(ctx, envelope)
    except StepFailed as exc:
        db.session.rollback()
        ctx.error(str(exc))


def why_not(envelope: Envelope, step: str) -> str:
    """Why the step must not run now ("" if it may)."""
    if step == ROLLBACK:
        return "Not run: the envelope is rolled back already." if envelope.status == EnvelopeStatus.ROLLED_BACK else ""
    if envelope.status in FINAL_ENVELOPE_STATUSES:
        return f"Not run: the envelope is {envelope.status_label.lower()}."
    index = STEPS.index(step)
    if index:
        before = STEPS[index - 1]
        latest = _latest_status(envelope.id, before)
        if latest not in SUCCEEDED:
            return f"Not run: the {before} step did not succeed."
    return ""


def _latest_status(envelope_id: int, step: str) -> str | None:
    return db.session.scalar(select(Run.status).where(Run.envelope_id == envelope_id, Run.args == args_of(step, envelope_id))
                             .order_by(Run.id.desc()).limit(1))


def notify(envelope: Envelope, ctx, step: str, level: str, reason: str, count: int = 1, first_lines=()) -> None:
    """Raise a notification on the envelope (S4): one per reason, with the count of rows it concerns
    and the first line numbers; committed with the step's work."""
    db.session.add(EnvelopeNotification(envelope_id=envelope.id, run_id=getattr(ctx, "run_id", None), step=step,
                                        level=level, reason=reason[:2000], count=count,
                                        first_lines=", ".join(str(line) for line in list(first_lines)[:10])[:200]))


# --- after each step ------------------------------------------------------------------------------

@lifecycle.on_finish
def after_step(ended: lifecycle.Ended):
    """Keep the chain going (or stopped) and the envelope's status true after each of its runs."""
    if ended.job_type != KEY:  # only the processing job's runs are steps: no query for the rest
        return
    run = db.session.get(Run, ended.run_id)
    if run is None or run.envelope_id is None:
        return
    envelope = db.session.get(Envelope, run.envelope_id)
    db.session.refresh(envelope)
    step = step_of(run)
    if step in STEPS:
        if run.status == RunStatus.FAILED and step == "validate" and envelope.status not in FINAL_ENVELOPE_STATUSES:
            envelope.status, envelope.reason = EnvelopeStatus.CORRUPT, run.message
            envelope.finished_at = utcnow()
            db.session.commit()
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            _cancel_later_steps(envelope, step)
    refresh_status(envelope)


def _cancel_later_steps(envelope: Envelope, step: str):
    later = {args_of(s, envelope.id) for s in STEPS[STEPS.index(step) + 1:]}
    waiting = db.session.scalars(select(Run).where(Run.envelope_id == envelope.id, Run.status == RunStatus.QUEUED,
                                                   Run.args.in_(later)))
    for run in list(waiting):
        lifecycle.finish_run(run.id, RunStatus.CANCELLED, f"Not run: the {step} step did not succeed.",
                             only=(RunStatus.QUEUED,))


def refresh_status(envelope: Envelope) -> str:
    """The envelope's status from its runs: active while a step waits or runs; Errors when a step's
    latest run failed or was cancelled (or, while active, any step failed), or a step raised an
    error notification. Corrupt, Cancelled and Rolled back stay."""
    db.session.refresh(envelope)
    if envelope.status in FINAL_ENVELOPE_STATUSES:
        return envelope.status
    latest, failed_once = {}, False
    for run in runs_of(envelope.id):
        step = step_of(run)
        if step in STEPS:
            latest[step] = run.status
            failed_once = failed_once or run.status == RunStatus.FAILED
    active = any(status in ACTIVE_STATUSES for status in latest.values())
    # While its steps run, an envelope one of whose steps failed (and is being retried) shows its
    # errors; once through, what counts is how each step last ended, and the rows it rejected.
    errors = (active and failed_once) or any(status in (RunStatus.FAILED, RunStatus.CANCELLED)
                                             for status in latest.values()) or bool(
        db.session.scalar(select(func.count()).select_from(EnvelopeNotification).where(
            EnvelopeNotification.envelope_id == envelope.id, EnvelopeNotification.level == "error")))
    if active:
        status = EnvelopeStatus.ERRORS_ACTIVE if errors else EnvelopeStatus.SUCCESS_ACTIVE
    else:
        status = EnvelopeStatus.ERRORS if errors else EnvelopeStatus.SUCCESS
    if status != envelope.status:
        envelope.status = status
        envelope.finished_at = None if active else utcnow()
        db.session.commit()
    return status
