"""RQ's forking worker, taught about Firetime runs: the worker claims a run and records its
end on its own warm connection, the horse only runs the job code, and a run is failed at once
when its work horse dies."""
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

    def work(self, *args, **kwargs):
        try:
            return super().work(*args, **kwargs)
        finally:
            shutil.rmtree(self.handoff_dir, ignore_errors=True)

    def execute_job(self, job, queue):
        from webapp.execution import runner

        if not job.id.startswith(RUN_PREFIX):
            db.session.remove()
            return super().execute_job(job, queue)
        # Claim and record the end here, on the worker's warm connection; the horse only runs
        # the job code (see runner.preclaimed and runner.handoff).
        run_id = int(job.id[len(RUN_PREFIX):])
        path = os.path.join(self.handoff_dir, f"run-{run_id}.outcome")
        try:
            claimed = runner.preclaimed[run_id] = runner.claim(run_id, self.name)
            runner.handoff[run_id] = path
        except Exception:  # database away for a moment: the horse claims and finishes by itself
            log.exception("claim in the worker failed run=%s; the work horse will try", run_id)
            db.session.rollback()
            claimed = None
        db.session.remove()  # no connection in use at the fork: the horse gets a pool of its own
        try:
            return super().execute_job(job, queue)
        finally:
            runner.preclaimed.clear()
            runner.handoff.clear()
            if claimed is not None:
                try:
                    runner.collect(run_id, path)
                except Exception:  # database away: the reaper fails the silent run, log kept
                    log.exception("could not record the end of run=%s", run_id)
                    db.session.rollback()
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

        if ret_val is None:  # RQ killed it: it ran far past its time limit
            reason = "The job ran past its time limit and its work horse was killed."
        else:
            how = f"signal {os.WTERMSIG(ret_val)}" if os.WIFSIGNALED(ret_val) else f"status {ret_val}"
            reason = f"The worker process running this job ended unexpectedly ({how})."
        try:
            fail_lost_run(int(job.id[len(RUN_PREFIX):]), reason)
        finally:
            db.session.remove()


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
    # Named by host and process, never by an inherited RQ_WORKER_ID (that names a horse's worker).
    worker = FiretimeWorker(queues, connection=connection, name=f"{socket.gethostname()}.{os.getpid()}",
                            job_monitoring_interval=5)
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
