"""Housekeeping the scheduler runs every few seconds, so that every run reaches a final
status: runs whose worker vanished, cancels the job code ignored, runs RQ lost. A run counts
as dead only once no worker holds its lease (livelog.watch): a silent horse that a worker still
watches is stopped by that worker first, so the job's next run never starts beside it."""
import logging
import time
from datetime import timedelta

from flask import current_app
from rq.command import send_command
from rq.job import JobStatus
from sqlalchemy import select

from webapp.execution import livelog, notify, queues
from webapp.execution.isolation import each
from webapp.execution.lifecycle import enqueue, fail_lost_run, finish_run, grace_expired, release_next
from webapp.execution.rqjobs import rq_status
from webapp.extensions import db, redis_client
from webapp.models import Job, Run, RunStatus
from webapp.models.types import utcnow

log = logging.getLogger(__name__)


# RQ states of a job that a worker will still take; any other, while the run is queued in the
# database, means RQ lost or gave up on it (Redis emptied, a crash while it was being claimed).
WILL_RUN = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def _requeue_if_lost(run) -> bool:
    if rq_status(run.rq_job_id) in WILL_RUN:
        return False
    enqueue(run)
    return True


def stop_horse(run) -> bool:
    """Have the worker holding the run's lease kill its work horse (it then records the end
    and hands over the next run); False if no worker holds it."""
    worker = livelog.watcher(redis_client.conn, run.id)
    if worker is None:
        return False
    send_command(redis_client.conn, worker, "stop-job", job_id=run.rq_job_id)
    return True


class Reaper:
    """Keeps a little memory between passes: a heartbeat must be missing twice, some seconds
    apart, before a run is declared lost (a Redis restart loses every heartbeat at once)."""

    def __init__(self):
        self.suspects: dict[int, float] = {}

    def run_once(self):
        now = utcnow()
        report = {"lost": 0, "stopped": 0, "requeued": 0, "released": 0, "mails": 0}
        in_progress = db.session.scalars(select(Run).where(Run.status == RunStatus.IN_PROGRESS)).all()
        db.session.commit()
        for gone in set(self.suspects) - {run.id for run in in_progress}:
            del self.suspects[gone]  # ended some other way
        each(in_progress, lambda run: self._check(run, now, report), "checking a run in progress")
        report["requeued"] = each([now], self._requeue_lost, "handing lost runs to RQ again")
        report["released"] = each([now], self._release_stalled, "releasing stalled jobs")
        report["mails"] = each([now], notify.sweep, "sweeping report emails")  # those Redis lost
        if any(report.values()):
            log.info("reaper %s", " ".join(f"{k}={v}" for k, v in report.items()))
        return report

    def _check(self, run, now, report):
        conn = redis_client.conn
        if run.cancel_requested_at:
            livelog.request_cancel(conn, run.id)  # again, in case Redis lost the flag
            if grace_expired(run, now):
                report["stopped"] += self._stop_cancelled(run)
        dead_after = current_app.config["RUN_DEAD_AFTER"]
        if livelog.is_alive(conn, run.id) or (run.started_at and now - run.started_at < timedelta(seconds=dead_after)):
            self.suspects.pop(run.id, None)
            return
        first_missed = self.suspects.setdefault(run.id, time.monotonic())
        if time.monotonic() - first_missed < 2 * current_app.config["HEARTBEAT_SECONDS"]:
            return
        if stop_horse(run):
            # Its horse lives on but went silent (stopped, starved): its worker kills it and
            # records the end; the next run starts only then. Asked again if nothing happens.
            self.suspects[run.id] = time.monotonic()
            report["stopped"] += 1
            return
        self.suspects.pop(run.id, None)
        if fail_lost_run(run.id, f"The worker running this job stopped answering (no heartbeat for "
                                 f"{dead_after} s); it was probably killed."):
            report["lost"] += 1

    def _stop_cancelled(self, run) -> int:
        if stop_horse(run):
            return 1
        if livelog.is_alive(redis_client.conn, run.id):
            return 0  # a horse whose worker is gone: it ends by itself, then it is lost
        # Not executing anywhere: nothing left to stop.
        return int(finish_run(run.id, RunStatus.CANCELLED, "Cancelled on request."))

    def _requeue_lost(self, now) -> int:
        """Runs handed to RQ whose RQ job is gone (Redis emptied): hand them over again."""
        stale = now - timedelta(seconds=10)
        runs = db.session.scalars(select(Run).where(
            Run.status == RunStatus.QUEUED, Run.enqueued_at.isnot(None), Run.enqueued_at < stale)).all()
        db.session.commit()
        return each(runs, _requeue_if_lost, "handing a lost run to RQ again")

    def _release_stalled(self, now) -> int:
        """Waiting runs that nothing will hand over (a release lost in a crash between two
        steps): each queue's, through its gate (paused queues keep theirs, a serial queue
        starts its oldest), then those of job types no longer installed, handed over to fail
        with the reason. A run waiting behind an active one is normal, found and left alone in
        the same query (two seeks per job on ix_runs_status_job, whatever the history)."""
        released = each(queues.names(), lambda name: len(queues.release_waiting(name)), "releasing a queue")
        installed = [key for name in queues.names() for key in queues.types_on(name)]
        orphans = db.session.scalars(select(Run.job_id).join(Job, Job.id == Run.job_id).where(
            Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None), Job.job_type.notin_(installed)).distinct()).all()
        db.session.commit()
        return released + each(orphans, lambda job_id: release_next(job_id) is not None, "releasing a stalled job")
