"""RQ's forking worker, taught about Firetime runs: a fresh database connection in every
work horse, and a run failed at once when its work horse dies."""
import gc
import logging
import os
import shutil
import socket
import tempfile

from rq import Worker

from webapp.extensions import db

log = logging.getLogger(__name__)
RUN_PREFIX = "firetime-run-"


class FiretimeWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handoff_dir = tempfile.mkdtemp(prefix="firetime-worker-")  # private: mode 0700
    def execute_job(self, job, queue):
        from webapp.execution import runner

        if not job.id.startswith(RUN_PREFIX):
            db.session.remove()
            return super().execute_job(job, queue)
        # Claim and record the end here, on the worker's warm connection; the horse only runs
        # the job code (see runner.preclaimed and runner.handoff).
        run_id = int(job.id[len(RUN_PREFIX):])
        claimed = runner.preclaimed[run_id] = runner.claim(run_id, self.name)
        path = runner.handoff[run_id] = os.path.join(self.handoff_dir, f"run-{run_id}.outcome")
        db.session.remove()  # no connection in use at the fork: the horse gets a pool of its own
        try:
            return super().execute_job(job, queue)
        finally:
            runner.preclaimed.clear()
            runner.handoff.clear()
            if claimed is not None:
                try:
                    runner.collect(run_id, path)
                finally:
                    db.session.remove()

    def main_work_horse(self, job, queue):
        # Drop (without closing) the worker's pooled connections: they stay the worker's.
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


def warm_up():
    """Prepare once, in the worker, what every work horse would otherwise redo: a horse is a
    fork, so what the worker has loaded costs a run nothing (imports, SQLAlchemy's mapper
    configuration, the dialect's first-connect set-up)."""
    from sqlalchemy.orm import configure_mappers

    import webapp.execution.runner  # noqa: F401  (and with it dispatch, context, livelog, notify)
    from webapp.jobtypes import registry

    registry.load_builtin()
    configure_mappers()
    with db.engine.connect():
        pass
    # Objects made so far are never collected: the collector then leaves their memory pages
    # alone, and the horses do not copy them (copy-on-write) just to scan them.
    gc.freeze()


def run_worker(queues, connection, burst=False, with_scheduler=False):
    warm_up()
    worker = FiretimeWorker(queues, connection=connection, name=worker_name(), job_monitoring_interval=5)
    try:
        return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
    finally:
        shutil.rmtree(worker.handoff_dir, ignore_errors=True)
