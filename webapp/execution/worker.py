"""RQ's forking worker, taught about Firetime runs: a fresh database connection in every
work horse, and a run failed at once when its work horse dies."""
import logging
import os
import socket

from rq import Worker

from webapp.extensions import db

log = logging.getLogger(__name__)
RUN_PREFIX = "firetime-run-"


class FiretimeWorker(Worker):
    def execute_job(self, job, queue):
        # No pooled connection may be shared between the worker and its forked horse.
        db.session.remove()
        db.engine.dispose()
        return super().execute_job(job, queue)

    def main_work_horse(self, job, queue):
        db.engine.dispose(close=False)
        return super().main_work_horse(job, queue)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if not job.id.startswith(RUN_PREFIX):
            return
        from webapp.execution.runner import fail_lost_run

        how = f"signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"status {ret_val}"
        try:
            fail_lost_run(int(job.id[len(RUN_PREFIX):]), f"The worker process running this job ended "
                                                          f"unexpectedly ({how}).")
        finally:
            db.session.remove()


def worker_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"


def run_worker(queues, connection, burst=False, with_scheduler=False):
    worker = FiretimeWorker(queues, connection=connection, name=worker_name(), job_monitoring_interval=5)
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
