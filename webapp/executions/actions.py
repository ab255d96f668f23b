"""Retry a run and cancel waiting runs, callable without HTTP; the caller has checked that the
user may see each run (webapp.auth.permissions)."""
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select

from webapp.auth.permissions import audit_query, runs_query
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.jobtypes import registry
from webapp.models import AuditEvent, Run, RunStatus, Trigger
from webapp.models.audit import record

RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)
MAX_BULK = 500  # runs cancelled by one request; a page shows far fewer
_NEAR = timedelta(seconds=5)  # a run-now record is written in the transaction that creates the run


class NotRetried(Exception):
    """The run cannot be retried (the message says why)."""


def retry_run(run: Run, user) -> Run:
    """A new run of the run's job with the same arguments, trigger retry, pointing at `run`.

    dispatch.request_run audits the new run (run now, with retry_of); the original run gets a
    `retry` record naming the new one, so that its own audit shows it was retried, and by whom."""
    if run.status not in RETRYABLE:
        raise NotRetried(f"Run #{run.id} is {run.status_label.lower()}: only failed or cancelled runs can be retried.")
    if run.envelope_id is not None:  # a step of an envelope: S4's retry guard, and the rest of its chain
        from webapp.linkage import chain

        try:
            return chain.retry(run, user)
        except chain.ChainRefused as exc:
            raise NotRetried(f"Run #{run.id} was not retried: {exc}") from None
    try:
        new = dispatch.request_run(run.job, trigger=Trigger.RETRY, user=user, retry_of=run, args=run.args)
    except (dispatch.NotRunnable, registry.InvalidArguments) as exc:
        raise NotRetried(f"Run #{run.id} was not retried: {exc}") from None
    # Named by its number as well as its job's name: a job has many runs, and the record is read
    # in lists of the job's history where only the number tells them apart.
    record("retry", "run", run, actor=user, object_name=f"#{run.id} of {run.job.name}", domain_id=run.job.domain_id,
           after={"retry_run_id": new.id}, message=f"Run #{run.id} is retried as run #{new.id}.")
    db.session.commit()
    return new


@dataclass
class Cancelled:
    """What happened to one run a user ticked for cancelling."""
    run_id: int
    outcome: str  # cancelled, stopping, running, finished, not_found

    @property
    def sentence(self) -> str:
        return {"cancelled": f"#{self.run_id} cancelled",
                "stopping": f"#{self.run_id} had started: asked to stop",
                "running": f"#{self.run_id} is running, not waiting: left running (cancel it on its page)",
                "finished": f"#{self.run_id} had already finished",
                "not_found": f"#{self.run_id} not found"}[self.outcome]


def cancel_runs(user, run_ids) -> list[Cancelled]:
    """Cancel each of `run_ids` the user may see that still waits, as the run page's Cancel does;
    a run that started meanwhile is left running (this action is for waiting runs), and ids the
    user may not see are reported as not found, exactly like ids no run has."""
    wanted = sorted(set(run_ids))[:MAX_BULK]
    runs = {run.id: run for run in db.session.scalars(runs_query(user).where(Run.id.in_(wanted)))} if wanted else {}
    results = []
    for run_id in wanted:
        run = runs.get(run_id)
        if run is None:
            outcome = "not_found"
        elif run.status == RunStatus.QUEUED:  # cancel_run stops it if it starts this instant
            outcome = dispatch.cancel_run(run, user)
        else:
            outcome = "running" if run.status == RunStatus.IN_PROGRESS else "finished"
        results.append(Cancelled(run_id, outcome))
    return results


def retries_of(user, run: Run) -> list[int]:
    """Ids of the runs that retry `run` (same job, so the user sees them if they see `run`): read
    through runs(job_id, id) from `run` on, as a retry is newer than what it retries."""
    return list(db.session.scalars(select(Run.id).where(Run.job_id == run.job_id, Run.id > run.id,
                                                        Run.retry_of_id == run.id).order_by(Run.id)))


def run_audit(user, run: Run, limit: int = 200) -> list[AuditEvent]:
    """The audit records about `run` that the user may read, oldest first: those on the run
    (cancel, retry), those made while it ran (what its job changed), and the job's record of the
    request that created it (run now names the run it queued)."""
    about_run = or_(and_(AuditEvent.object_type == "run", AuditEvent.object_id == run.id),
                    AuditEvent.run_id == run.id)
    events = list(db.session.scalars(audit_query(user).where(about_run).order_by(AuditEvent.id).limit(limit)))
    near = (audit_query(user).where(AuditEvent.object_type == "job", AuditEvent.object_id == run.job_id,
                                    AuditEvent.action == "run_now",
                                    AuditEvent.at.between(run.created_at - _NEAR, run.created_at + _NEAR)))
    requested = [event for event in db.session.scalars(near) if (event.after or {}).get("run_id") == run.id]
    return sorted({event.id: event for event in requested + events}.values(), key=lambda event: event.id)
