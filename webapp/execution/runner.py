"""The RQ entry point: claim the Run, call the job type through a RunContext, record the end."""
import logging
import os
import socket
import threading
import traceback

from flask import current_app
from sqlalchemy import insert, update

from webapp.execution import livelog, notify
from webapp.execution.context import RunCancelled, RunContext
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Run, RunFile, RunLogLine, RunStatus
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.types import utcnow

log = logging.getLogger(__name__)


def execute(run_id: int):
    """Run one Firetime run inside an RQ work horse."""
    conn = redis_client.conn
    config = current_app.config
    if not _claim(run_id):
        log.info("run not claimed (cancelled or already taken) run=%s", run_id)
        return
    run = db.session.get(Run, run_id)
    job = run.job
    ctx = RunContext(run_id=run.id, job_id=job.id, conn=conn, files_dir=config["FILES_DIR"],
                     args=run.args.split(), max_lines=config["LOG_MAX_LINES"],
                     run_as=job.run_as.username if job.run_as else None)
    stop = _start_heartbeat(conn, run.id, config["HEARTBEAT_SECONDS"], config["RUN_DEAD_AFTER"])
    status, message = RunStatus.SUCCEEDED, ""
    try:
        job_type = registry.get(job.job_type)
        ctx.params = job_type.params_for_run(job.params, run.args)
        db.session.commit()  # end the read transaction: job code starts with a clean session
        job_type.run(ctx, **ctx.params)
        if ctx.cancelled():
            status, message = RunStatus.CANCELLED, "Cancelled on request; the job stopped by itself."
    except RunCancelled:
        status, message = RunStatus.CANCELLED, "Cancelled on request."
    except Exception as exc:  # job code never hides a failure: the run fails with its message
        db.session.rollback()
        status, message = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        ctx.error(message)
        ctx.debug(traceback.format_exc())
    finally:
        stop.set()
    if status == RunStatus.SUCCEEDED and ctx.error_count:
        status, message = RunStatus.FAILED, ctx.first_error
    elif status == RunStatus.SUCCEEDED and ctx.warning_count:
        status = RunStatus.WARNINGS
    if ctx.dropped_lines:
        message = (message + " " if message else "") + f"({ctx.dropped_lines} log lines beyond the limit were not kept.)"
    finish_run(run_id, status, message, ctx=ctx)


def _claim(run_id: int) -> bool:
    worker = os.environ.get("RQ_WORKER_ID") or f"{socket.gethostname()}.{os.getpid()}"
    result = db.session.execute(claim_statement(run_id, worker))
    db.session.commit()
    if result.rowcount == 1:
        config = current_app.config
        livelog.heartbeat(redis_client.conn, run_id, config["RUN_DEAD_AFTER"])
        livelog.mark_started(redis_client.conn, run_id, worker)
        return True
    return False


def claim_statement(run_id: int, worker: str):
    return (update(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED)
            .values(status=RunStatus.IN_PROGRESS, started_at=utcnow(), worker_name=worker))


def _start_heartbeat(conn, run_id, every, ttl) -> threading.Event:
    """Keep the run's alive key fresh from a thread of the work horse; it dies with the horse."""
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            try:
                livelog.heartbeat(conn, run_id, ttl)
            except Exception:  # Redis away for a moment: the next beat tries again
                log.warning("heartbeat failed run=%s", run_id)

    threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True).start()
    return stop


def finish_run(run_id: int, status: str, message: str = "", ctx: RunContext | None = None,
               lines: list | None = None) -> bool:
    """Record a run's end once: the first caller wins (runner, cancel, reaper, stop callback)."""
    from webapp.execution.dispatch import release_next

    values = {"status": status, "finished_at": utcnow(), "message": message[:5000]}
    if ctx is not None:
        values.update(progress=ctx.percent if status != RunStatus.SUCCEEDED else 100,
                      progress_message=ctx.progress_message, warning_count=ctx.warning_count,
                      error_count=ctx.error_count, stats=ctx.stats, line_count=len(ctx.lines))
        lines = ctx.lines
    elif lines is not None:
        values.update(line_count=len(lines),
                      warning_count=sum(1 for line in lines if line["level"] == "warning"),
                      error_count=sum(1 for line in lines if line["level"] == "error"))
    result = db.session.execute(
        update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_STATUSES)).values(**values)
    )
    if result.rowcount != 1:
        db.session.rollback()
        return False
    if lines:
        db.session.execute(insert(RunLogLine), [
            {"run_id": run_id, "seq": line["seq"], "at": line["at"], "level": line["level"],
             "message": line["message"]} for line in lines
        ])
    if ctx is not None and ctx.files:
        job_id = db.session.get(Run, run_id).job_id
        db.session.add_all(RunFile(run_id=run_id, job_id=job_id, name=f.name, path=f.path, size=f.size,
                                   sha256=f.sha256, content_type=f.content_type) for f in ctx.files)
    db.session.commit()
    run = db.session.get(Run, run_id)
    log.info("run finished run=%s job=%s status=%s", run_id, run.job_id, status)
    try:
        livelog.mark_end(redis_client.conn, run_id, status, current_app.config["LIVELOG_TTL"])
    except Exception:
        log.warning("could not mark live log end run=%s", run_id)
    release_next(run.job_id)
    notify.report_run(run_id)  # queues the report emails; never raises, never waits on SMTP
    return True


def on_stopped(job, connection, *args, **kwargs):
    """RQ callback in the worker when a run's work horse was stopped (cancel after the grace)."""
    run_id = int(job.id.rsplit("-", 1)[1])
    lines = _lines_from_stream(run_id)
    finish_run(run_id, RunStatus.CANCELLED, "Cancelled on request; the job did not stop in time and was "
                                            "stopped.", lines=lines)


def _lines_from_stream(run_id):
    from datetime import datetime

    return [{"seq": int(f["seq"]), "at": datetime.fromisoformat(f["at"]), "level": f["level"],
             "message": f["msg"]} for f in livelog.all_lines(redis_client.conn, run_id)]


def fail_lost_run(run_id: int, reason: str) -> bool:
    """Fail a run whose worker is gone, keeping whatever log reached Redis."""
    try:
        lines = _lines_from_stream(run_id)
    except Exception:
        lines = []
    return finish_run(run_id, RunStatus.FAILED, reason, lines=lines)
