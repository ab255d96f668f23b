"""The queues page's actions, callable without HTTP.

Cancel per entry: the caller has checked that the user may see the run or job
(webapp.auth.permissions). Each answers with what happened, in a sentence, also when the entry
started, ended or fired between the page and the click.

Pause, resume, clear and the pause-on-failure setting are the engine's (execution/queues.py);
here is only the reading of what a form or a command line gives them."""
from datetime import datetime

from webapp.execution import dispatch
from webapp.execution.queues import REASON_MAX
from webapp.extensions import db
from webapp.models import Job, Run, RunStatus


def cancel_entry(run: Run, user, was: str = "") -> tuple[str, bool]:
    """Cancel a waiting run (recorded cancelled by the user) or ask a running one to stop.
    dispatch.cancel_run records and audits once: a second click finds the run final."""
    name = f"Run #{run.id} of {run.job.name}"
    if run.status not in (RunStatus.QUEUED, RunStatus.IN_PROGRESS):
        return f"{name} had already ended ({run.status_label.lower()}): nothing to cancel.", False
    if run.status == RunStatus.IN_PROGRESS and run.cancel_requested_at is not None:
        return f"{name} was already asked to stop.", False
    outcome = dispatch.cancel_run(run, user)
    if outcome == "cancelled":
        return f"{name} is cancelled: it will not run.", True
    if outcome == "stopping":
        if was == RunStatus.QUEUED:
            return f"{name} had just started when the cancel arrived: it is asked to stop.", True
        return f"{name} is asked to stop.", True
    db.session.refresh(run)
    return f"{name} had already ended ({run.status_label.lower()}) when the cancel arrived.", False


def skip_entry(job: Job, user, at: str = "") -> tuple[str, bool]:
    """Skip the job's next occurrence, if it is still the one the page showed (`at`, ISO)."""
    from webapp.main.filters import localtime

    Job.lock(job.id)
    db.session.refresh(job)
    try:
        expected = datetime.fromisoformat(at) if at else None
    except ValueError:
        expected = None
    if expected is not None and expected.tzinfo is None:
        expected = None  # not a time this page wrote: skip what is next, as the job page does
    if not job.schedulable or job.next_fire_at is None:
        db.session.rollback()
        return f"{job.name} has no planned occurrence any more: nothing skipped.", False
    if expected is not None and job.next_fire_at != expected:
        shown = localtime(expected)
        now_next = localtime(job.next_fire_at)
        db.session.rollback()
        return (f"The occurrence of {job.name} at {shown} has fired or moved meanwhile: nothing skipped. "
                f"Its next occurrence is {now_next}.", False)
    run = dispatch.skip_next_occurrence(job, user)
    if run is None:
        return f"{job.name} has no planned occurrence any more: nothing skipped.", False
    after = f" Its next occurrence is {localtime(job.next_fire_at)}." if job.next_fire_at else ""
    return f"The occurrence of {job.name} at {localtime(run.occurrence_at)} is skipped.{after}", True


def reason_problem(reason: str) -> str | None:
    """What is wrong with a pause reason as typed, in a sentence for next to the field; None if
    it may be used. (NUL and other control characters never get here: webapp/guards.py.)"""
    length = len(" ".join(reason.split()))
    if length > REASON_MAX:
        return f"The reason is {length:,} characters long: keep it to {REASON_MAX} at most."
    return None


def on_or_off(value: str) -> bool | None:
    """The pause-on-failure setting as a form or the command line writes it; None if neither."""
    return {"on": True, "off": False}.get(value.strip().lower())
