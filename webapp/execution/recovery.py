"""Housekeeping the scheduler runs every few seconds, so that every run reaches a final
status: runs whose worker vanished, cancels the job code ignored, runs RQ lost."""
import logging
import time
from datetime import timedelta

from flask import current_app
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from sqlalchemy import select

from webapp.execution import livelog, notify
from webapp.execution.dispatch import enqueue, grace_expired, release_next
from webapp.execution.runner import fail_lost_run, finish_run
from webapp.extensions import db, redis_client
from webapp.models import Run, RunStatus
from webapp.models.types import utcnow

log = logging.getLogger(__name__)


# RQ states of a job that a worker will still take; any other, while the run is queued in the
# database, means RQ lost or gave up on it (Redis emptied, a crash while it was being claimed).
WILL_RUN = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def _rq_status(rq_job_id):
    try:
        return RQJob.fetch(rq_job_id, connection=redis_client.conn).get_status(refresh=False)
    except NoSuchJobError:
        return None


class Reaper:
    """Keeps a little memory between passes: a heartbeat must be missing twice, some seconds
    apart, before a run is declared lost (a Redis restart loses every heartbeat at once)."""

    def __init__(self):
        self.suspects: dict[int, float] = {}

    def run_once(self):
        conn = redis_client.conn
        config = current_app.config
        now = utcnow()
        dead_after = timedelta(seconds=config["RUN_DEAD_AFTER"])
        report = {"lost": 0, "stopped": 0, "requeued": 0, "released": 0, "mails": 0}
        in_progress = db.session.scalars(select(Run).where(Run.status == RunStatus.IN_PROGRESS)).all()
        db.session.commit()
        for gone in set(self.suspects) - {run.id for run in in_progress}:
            del self.suspects[gone]  # ended some other way
        for run in in_progress:
            if run.cancel_requested_at:
                livelog.request_cancel(conn, run.id)  # again, in case Redis lost the flag
                if grace_expired(run, now):
                    report["stopped"] += self._stop(run)
            if livelog.is_alive(conn, run.id) or (run.started_at and now - run.started_at < dead_after):
                self.suspects.pop(run.id, None)
                continue
            first_missed = self.suspects.setdefault(run.id, time.monotonic())
            if time.monotonic() - first_missed >= 2 * config["HEARTBEAT_SECONDS"]:
                self.suspects.pop(run.id, None)
                if fail_lost_run(run.id, f"The worker running this job stopped answering (no heartbeat "
                                         f"for {config['RUN_DEAD_AFTER']} s); it was probably killed."):
                    report["lost"] += 1
        report["requeued"] = self._requeue_lost(now)
        report["released"] = self._release_stalled()
        report["mails"] = notify.sweep(now)  # report emails whose queueing or retry Redis lost
        if any(report.values()):
            log.info("reaper %s", " ".join(f"{k}={v}" for k, v in report.items()))
        return report

    def _stop(self, run) -> int:
        try:
            send_stop_job_command(redis_client.conn, run.rq_job_id)
            return 1
        except (NoSuchJobError, InvalidJobOperation):
            # Not executing anywhere RQ knows of: nothing left to stop.
            return int(finish_run(run.id, RunStatus.CANCELLED, "Cancelled on request."))

    def _requeue_lost(self, now) -> int:
        """Runs handed to RQ whose RQ job is gone (Redis emptied): hand them over again."""
        stale = now - timedelta(seconds=10)
        runs = db.session.scalars(select(Run).where(
            Run.status == RunStatus.QUEUED, Run.enqueued_at.isnot(None), Run.enqueued_at < stale)).all()
        count = 0
        for run in runs:
            if _rq_status(run.rq_job_id) not in WILL_RUN:
                enqueue(run)
                count += 1
        db.session.commit()
        return count

    def _release_stalled(self) -> int:
        """Jobs with waiting runs and nothing active: a release was lost (a crash between two
        steps); start the next one now."""
        waiting_jobs = db.session.scalars(select(Run.job_id).where(
            Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None)).distinct()).all()
        db.session.commit()
        return sum(1 for job_id in waiting_jobs if release_next(job_id) is not None)
