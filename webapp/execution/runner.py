"""The RQ entry point: claim the Run, call the job type through a RunContext, record the end."""
import logging
import os
import pickle
import socket
import traceback
from dataclasses import dataclass
from typing import Callable

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import insert, select, update
from sqlalchemy.orm import joinedload

from webapp.execution import livelog, notify
from webapp.execution.context import RunCancelled, RunContext
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job, Run, RunFile, RunLogLine, RunStatus
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """What running a claimed run needs, read in the same transaction as the claim."""

    run_id: int
    job_id: int
    job_type: str
    params: dict
    args: str
    run_as: str | None
    reports: bool


@dataclass
class Outcome:
    """How a run ended, as the work horse saw it (RunContext's attribute names)."""

    status: str
    message: str
    job_id: int
    percent: int
    progress_message: str
    warning_count: int
    error_count: int
    stats: dict
    lines: list
    files: list
    reports: bool  # the job sends report emails


# Set by FiretimeWorker just before it forks the work horse. The long-lived worker claims the
# run on its warm connection (preclaimed), and records the end from the outcome the horse leaves
# in a file (handoff): a fresh horse would pay for a new connection and cold caches (~15 ms).
preclaimed: dict[int, Claimed | None] = {}
handoff: dict[int, str] = {}


def execute(run_id: int):
    """Run one Firetime run inside an RQ work horse."""
    config = current_app.config
    claimed = preclaimed.pop(run_id) if run_id in preclaimed else claim(run_id, worker_label())
    if claimed is None:
        log.info("run not claimed (cancelled or already taken) run=%s", run_id)
        return
    ctx = RunContext(run_id=run_id, job_id=claimed.job_id, live=None, files_dir=config["FILES_DIR"],
                     args=claimed.args.split(), max_lines=config["LOG_MAX_LINES"],
                     max_line_chars=config["LOG_MAX_LINE_CHARS"], run_as=claimed.run_as)
    ctx.live = livelog.Publisher(redis_client.conn, run_id, ctx.lines, config["HEARTBEAT_SECONDS"],
                                 config["RUN_DEAD_AFTER"], ttl=config["LIVELOG_TTL"],
                                 max_lines=config["LOG_MAX_LINES"]).start()
    try:
        status, message = _call_job_type(ctx, claimed)
    finally:
        ctx.live.close()
    if status == RunStatus.SUCCEEDED and ctx.error_count:
        status, message = RunStatus.FAILED, ctx.first_error
    elif status == RunStatus.SUCCEEDED and ctx.warning_count:
        status = RunStatus.WARNINGS
    if ctx.dropped_lines:
        message = (message + " " if message else "") + f"({ctx.dropped_lines} log lines beyond the limit were not kept.)"
    outcome = Outcome(status, message, ctx.job_id, ctx.percent, ctx.progress_message, ctx.warning_count,
                      ctx.error_count, ctx.stats, ctx.lines, ctx.files, claimed.reports)
    if run_id in handoff:
        _leave(outcome, handoff[run_id])
    else:
        finish_run(run_id, status, message, ctx=outcome)


def _call_job_type(ctx: RunContext, claimed: Claimed) -> tuple[str, str]:
    """Run the job code; how it ended, as (status, message)."""
    try:
        job_type = registry.get(claimed.job_type)
        ctx.params = job_type.params_for_run(claimed.params, claimed.args)
        job_type.run(ctx, **ctx.params)
        if ctx.cancelled():
            return RunStatus.CANCELLED, "Cancelled on request; the job stopped by itself."
        return RunStatus.SUCCEEDED, ""
    except RunCancelled:
        return RunStatus.CANCELLED, "Cancelled on request."
    except registry.UnknownJobType as exc:
        ctx.error(str(exc))
        return RunStatus.FAILED, str(exc)
    except Exception as exc:  # job code never hides a failure: the run fails with its message
        db.session.rollback()
        message = f"{type(exc).__name__}: {exc}"
        ctx.error(message)
        ctx.debug(traceback.format_exc())
        return RunStatus.FAILED, message


def _leave(outcome: Outcome, path: str):
    with open(path + ".part", "wb") as handle:
        pickle.dump(outcome, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(path + ".part", path)  # the worker sees a whole outcome or none


NO_OUTCOME = "The work horse ended without reporting how the run ended."


def collect(run_id: int, path: str, reason: str = NO_OUTCOME, stopped: bool = False) -> bool:
    """In the worker, once the horse has exited: record the end the horse left behind. A horse
    that left nothing was stopped on request, or died (killed, or failing to write): its run
    ends that way, with the reason the worker saw, unless it already ended another way."""
    try:
        with open(path, "rb") as handle:
            outcome = pickle.load(handle)  # written by our own horse, in the worker's private dir
    except FileNotFoundError:
        if stopped:
            end_stopped(run_id)
        else:
            fail_lost_run(run_id, reason)
        return False
    os.remove(path)
    return finish_run(run_id, outcome.status, outcome.message, ctx=outcome)


def worker_label() -> str:
    return os.environ.get("RQ_WORKER_ID") or f"{socket.gethostname()}.{os.getpid()}"


def claim(run_id: int, worker: str) -> Claimed | None:
    """Move the run from queued to in progress, once; None if it was cancelled or taken."""
    result = db.session.execute(
        update(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.IN_PROGRESS, started_at=utcnow(), worker_name=worker)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.commit()
        return None
    run = db.session.scalar(select(Run).options(joinedload(Run.job).joinedload(Job.run_as)).where(Run.id == run_id))
    job = run.job
    claimed = Claimed(run.id, job.id, job.job_type, dict(job.params or {}), run.args or "",
                      job.run_as.username if job.run_as else None, job.report_enabled)
    db.session.commit()
    try:
        livelog.mark_started(redis_client.conn, run_id, worker, current_app.config["RUN_DEAD_AFTER"],
                             current_app.config["LIVELOG_TTL"])
    except RedisError as exc:  # the claim stands: the run goes on, and its live side follows
        log.warning("could not mark run=%s started in Redis (%s); running it anyway", run_id, exc)
    return claimed


def finish_run(run_id: int, status: str, message: str = "", ctx: RunContext | None = None,
               lines: list | None = None, job_id: int | None = None, only=ACTIVE_STATUSES,
               audit: Callable[[], object] | None = None) -> bool:
    """Record a run's end once: the first caller wins (runner, cancel, reaper, stop callback).

    The job is locked first, then the run (the order every writer of a job's runs keeps), and
    the job's next waiting run is handed over in the same transaction, so a run asked for
    while this one ended cannot be left waiting. `only` narrows which statuses may end (a
    cancel of a waiting run must not end one a worker has just started). `audit` adds the
    audit record of whoever ended it to the same transaction."""
    from webapp.execution.dispatch import enqueue, pick_next

    job_id = job_id or (ctx.job_id if ctx else db.session.scalar(select(Run.job_id).where(Run.id == run_id)))
    if job_id is None:
        db.session.rollback()
        return False
    Job.lock(job_id)
    result = db.session.execute(update(Run).where(Run.id == run_id, Run.status.in_(only))
                                .values(**_end_values(status, message, ctx, lines))
                                .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        return False
    lines = ctx.lines if ctx is not None else lines
    if lines:
        db.session.execute(insert(RunLogLine.__table__), [
            {"run_id": run_id, "seq": line["seq"], "at": line["at"], "level": line["level"],
             "message": line["message"]} for line in lines
        ])
    if ctx is not None and ctx.files:
        db.session.add_all(RunFile(run_id=run_id, job_id=job_id, name=f.name, path=f.path, size=f.size,
                                   sha256=f.sha256, content_type=f.content_type) for f in ctx.files)
    # A run that ran was the job's only active one, so only a waiting run can follow it.
    following = pick_next(job_id, check_busy=ctx is None)
    reports = ctx.reports if ctx is not None else db.session.scalar(select(Job.report_enabled)
                                                                     .where(Job.id == job_id))
    if audit is not None:
        audit()
    db.session.commit()
    log.info("run finished run=%s job=%s status=%s", run_id, job_id, status)
    try:
        livelog.mark_end(redis_client.conn, run_id, status, current_app.config["LIVELOG_TTL"])
    except Exception:
        log.warning("could not mark live log end run=%s", run_id)
    if following is not None:
        enqueue(following)
    if reports:
        notify.report_run(run_id)  # queues the report emails; never raises, never waits on SMTP
    return True


def _end_values(status, message, ctx, lines) -> dict:
    values = {"status": status, "finished_at": utcnow(), "message": message[:5000]}
    if ctx is not None:
        values.update(progress=ctx.percent if status != RunStatus.SUCCEEDED else 100,
                      progress_message=ctx.progress_message, warning_count=ctx.warning_count,
                      error_count=ctx.error_count, stats=ctx.stats, line_count=len(ctx.lines))
    elif lines is not None:
        values.update(line_count=len(lines),
                      warning_count=sum(1 for line in lines if line["level"] == "warning"),
                      error_count=sum(1 for line in lines if line["level"] == "error"))
    return values


def on_stopped(job, connection, *args, **kwargs):
    """RQ's stop callback, named by RQ jobs enqueued by earlier versions; FiretimeWorker now
    records a stopped run itself (RQ skips the callback when Redis lost the job's hash)."""
    end_stopped(int(job.id.rsplit("-", 1)[1]))


def end_stopped(run_id: int) -> bool:
    """Record the end of a run whose horse its worker stopped on request: a cancel the job code
    ignored past the grace, or housekeeping's stop of a horse gone silent."""
    if db.session.scalar(select(Run.cancel_requested_at).where(Run.id == run_id)) is not None:
        status, reason = RunStatus.CANCELLED, "Cancelled on request; the job did not stop in time and was stopped."
    else:
        status, reason = RunStatus.FAILED, (
            f"The work horse running this job stopped answering (no heartbeat for "
            f"{current_app.config['RUN_DEAD_AFTER']} s), so it was stopped before the next run could start.")
    return finish_run(run_id, status, reason, lines=_lines_kept_in_redis(run_id))


def _lines_kept_in_redis(run_id) -> list:
    """The log lines of a run whose horse left no outcome: what reached its stream, if Redis
    still has it (a line sent twice around an outage is kept once)."""
    from datetime import datetime

    try:
        fields = livelog.all_lines(redis_client.conn, run_id)
    except RedisError:
        return []
    lines = {int(f["seq"]): {"seq": int(f["seq"]), "at": datetime.fromisoformat(f["at"]), "level": f["level"],
                             "message": f["msg"]} for f in fields}
    return [lines[seq] for seq in sorted(lines)]


def fail_lost_run(run_id: int, reason: str) -> bool:
    """Fail a run whose worker is gone, keeping whatever log reached Redis."""
    return finish_run(run_id, RunStatus.FAILED, reason, lines=_lines_kept_in_redis(run_id))
