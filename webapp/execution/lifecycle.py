"""A run's life after it is created: handed to RQ (enqueue, hand-over of the next waiting
run), claimed by a worker, finished once, cancelled. Creating runs is dispatch's; running job
code is the runner's; both come here for the rest, so neither imports the other.

When a run has ended (its end committed), the finish hooks run in order, each on its own: a
failing hook is logged and never changes how the run ended nor stops the others. The report
email is the first; chains, pause-on-failure and script clean-up register theirs with
`on_finish(fn)`; fn gets an `Ended`."""
import functools
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import bindparam, insert, select, text, update

from webapp.execution import livelog, notify, queues
from webapp.execution.context import RunAs
from webapp.execution.rqjobs import RUNNER, run_job_id
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job, QueueState, Run, RunFile, RunLogLine, RunStatus, User
from webapp.models.audit import record
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.types import utcnow

log = logging.getLogger(__name__)


# --- finish hooks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Ended:
    """What a finish hook learns about a run whose end has just been committed."""

    run_id: int
    job_id: int
    status: str
    reports: bool  # the job sends report emails
    job_type: str | None = None  # so that a hook for one type asks nothing of the others' runs


def _report(ended: Ended):
    if ended.reports:
        notify.report_run(ended.run_id)  # queues the report emails; never raises, never waits on SMTP


def _pause_on_failure(ended: Ended):
    queues.tell_paused(ended)  # the pause itself commits with the run's end (end_run)


_FINISH_HOOKS: list[Callable[[Ended], object]] = [_report, _pause_on_failure]


def on_finish(hook: Callable[[Ended], object]) -> Callable[[Ended], object]:
    """Register hook(ended) to run after every run's end (usable as a decorator); once."""
    if hook not in _FINISH_HOOKS:
        _FINISH_HOOKS.append(hook)
    return hook


def _run_finish_hooks(ended: Ended):
    for hook in list(_FINISH_HOOKS):
        try:
            hook(ended)
        except Exception:
            log.exception("finish hook %s failed run=%s; the run's end stands", getattr(hook, "__name__", hook),
                          ended.run_id)
            db.session.rollback()


# --- claim ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    """What running a claimed run needs, read in the same transaction as the claim."""

    run_id: int
    job_id: int
    job_type: str
    params: dict
    args: str
    run_as: RunAs | None
    reports: bool


def worker_label() -> str:
    return os.environ.get("RQ_WORKER_ID") or f"{socket.gethostname()}.{os.getpid()}"


def claim(run_id: int, worker: str, live: bool = True, ending: "Ending | None" = None,
          queue: str | None = None) -> Claimed | None:
    """Move the run from queued to in progress, once; None if it was cancelled or taken, or if
    `queue` (the RQ queue it came from) is paused: then it goes back to the runs waiting in the
    database, and the queue's resume hands it over again in its turn.

    One statement claims the run and reads what running it needs. `ending`: the end of the
    worker's previous run, staged by end_run in the open transaction, commits with this claim
    (one commit between two runs instead of two). `live=False`: the caller marks the live
    start of this run, and the live end of `ending`, itself (the worker sends both with RQ's
    record of the start: one round trip)."""
    together = db.session.get_bind().dialect.name == "postgresql"
    row = db.session.execute(_CLAIM_AND_MARK if together else _CLAIM,
                             {"run_id": run_id, "queued": RunStatus.QUEUED, "in_progress": RunStatus.IN_PROGRESS,
                              "started_at": utcnow(), "worker": worker, "queue": queue}).one_or_none()
    if row is None and queue is not None:
        held = db.session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED)
                                  .values(enqueued_at=None).execution_options(synchronize_session=False))
        if held.rowcount:
            log.info("run=%s not started: queue %s is paused; it waits for the resume", run_id, queue)
    if row is not None and not together:  # the job's last status follows its latest run (Job.last_status)
        db.session.execute(_MARK_LATEST, {"job_id": row.job_id, "run_id": run_id,
                                          "in_progress": RunStatus.IN_PROGRESS})
    db.session.commit()
    if ending is not None:
        ending.announce(mark_live=live)
    if row is None:
        return None
    claimed = Claimed(run_id, row.job_id, row.job_type, dict(row.params or {}), row.args or "",
                      RunAs(row.run_as_id, row.run_as_name) if row.run_as_id is not None else None,
                      bool(row.report_enabled))
    if live:
        try:
            livelog.mark_started(redis_client.conn, run_id, worker, current_app.config["RUN_DEAD_AFTER"],
                                 current_app.config["LIVELOG_TTL"])
        except RedisError as exc:  # the claim stands: the run goes on, and its live side follows
            log.warning("could not mark run=%s started in Redis (%s); running it anyway", run_id, exc)
    return claimed


# The claim, written out: SQLAlchemy renders RETURNING columns unqualified for SQLite, which
# makes the subqueries' columns ambiguous. Both SQLite (3.35+) and PostgreSQL take it as it is.
_CLAIM_UPDATE = """
        UPDATE runs SET status = :in_progress, started_at = :started_at, worker_name = :worker
        WHERE id = :run_id AND status = :queued
          AND NOT EXISTS (SELECT 1 FROM queue_states q WHERE q.name = :queue AND q.paused_at IS NOT NULL)"""


def _claim_statement(sql):
    runs, jobs = Run.__table__.c, Job.__table__.c
    return text(sql).bindparams(
        bindparam("started_at", type_=runs.started_at.type), bindparam("queued", type_=runs.status.type),
        bindparam("in_progress", type_=runs.status.type), bindparam("queue", type_=QueueState.__table__.c.name.type)
    ).columns(job_id=runs.job_id.type, args=runs.args.type, job_type=jobs.job_type.type, params=jobs.params.type,
              report_enabled=jobs.report_enabled.type, run_as_id=jobs.run_as_id.type,
              run_as_name=User.__table__.c.username.type)


_CLAIM = _claim_statement(_CLAIM_UPDATE + """
        RETURNING job_id, args,
            (SELECT j.job_type FROM jobs j WHERE j.id = runs.job_id) AS job_type,
            (SELECT j.params FROM jobs j WHERE j.id = runs.job_id) AS params,
            (SELECT j.report_enabled FROM jobs j WHERE j.id = runs.job_id) AS report_enabled,
            (SELECT j.run_as_id FROM jobs j WHERE j.id = runs.job_id) AS run_as_id,
            (SELECT u.username FROM jobs j JOIN users u ON u.id = j.run_as_id WHERE j.id = runs.job_id)
                AS run_as_name""")
# The job's last status follows its latest run (Job.last_status); updated_at stays: not an edit.
_MARK_LATEST_SET = "UPDATE jobs SET last_status = :in_progress"
_MARK_LATEST = text(_MARK_LATEST_SET + " WHERE id = :job_id AND last_run_id = :run_id").bindparams(
    bindparam("in_progress", type_=Run.__table__.c.status.type))
# PostgreSQL: the claim and that mark in one statement, one round trip. The job's row is read
# from the statement's snapshot: the mark changes nothing the claim returns.
_CLAIM_AND_MARK = _claim_statement(f"""
        WITH claimed AS ({_CLAIM_UPDATE}
            RETURNING job_id, args),
        latest AS ({_MARK_LATEST_SET} FROM claimed
            WHERE jobs.id = claimed.job_id AND jobs.last_run_id = :run_id)
        SELECT c.job_id, c.args, j.job_type, j.params, j.report_enabled, j.run_as_id, u.username AS run_as_name
        FROM claimed c JOIN jobs j ON j.id = c.job_id LEFT JOIN users u ON u.id = j.run_as_id""")


# --- finish ---------------------------------------------------------------------------------

@dataclass
class Ending:
    """A run's end, written in the open transaction by end_run; once the caller has committed
    it, announce() tells the rest: the live log, the next waiting run, the finish hooks."""

    ended: Ended
    following: Run | None

    def announce(self, mark_live=True):
        """mark_live=False: the caller tells live readers (livelog.stage_end)."""
        run_id = self.ended.run_id
        log.info("run finished run=%s job=%s status=%s", run_id, self.ended.job_id, self.ended.status)
        if mark_live:
            try:
                livelog.mark_end(redis_client.conn, run_id, self.ended.status, current_app.config["LIVELOG_TTL"])
            except Exception:
                log.warning("could not mark live log end run=%s", run_id)
        if self.following is not None:
            enqueue(self.following)
        _run_finish_hooks(self.ended)


def finish_run(run_id: int, status: str, message: str = "", ctx=None,
               lines: list | None = None, job_id: int | None = None, only=ACTIVE_STATUSES,
               audit: Callable[[], object] | None = None) -> bool:
    """Record a run's end once: the first caller wins (runner, cancel, reaper, stop callback).
    See end_run; this commits it and announces it."""
    ending = end_run(run_id, status, message, ctx, lines, job_id, only, audit)
    if ending is None:
        return False
    db.session.commit()
    ending.announce()
    return True


def end_run(run_id: int, status: str, message: str = "", ctx=None,
            lines: list | None = None, job_id: int | None = None, only=ACTIVE_STATUSES,
            audit: Callable[[], object] | None = None) -> Ending | None:
    """Write a run's end in the transaction, which must hold nothing else yet; the caller
    commits, then calls announce(). None, with the transaction rolled back, if the run was not
    in one of the statuses `only` (it ended another way).

    The job is locked first, then the run (the order every writer of a job's runs keeps), and
    the job's next waiting run is handed over in the same transaction, so a run asked for
    while this one ended cannot be left waiting. `only` narrows which statuses may end (a
    cancel of a waiting run must not end one a worker has just started). `audit` adds the
    audit record of whoever ended it to the same transaction."""
    job_id = job_id or (ctx.job_id if ctx else db.session.scalar(select(Run.job_id).where(Run.id == run_id)))
    if job_id is None:
        db.session.rollback()
        return None
    job_type = Job.lock(job_id, ended=(run_id, status))
    values = _end_values(status, message, ctx, lines)
    result = db.session.execute(_end_statement(tuple(values)), {"run_id": run_id, "only": list(only),
                                                                **{f"new_{k}": v for k, v in values.items()}})
    if result.rowcount != 1:
        db.session.rollback()
        return None
    if status == RunStatus.FAILED:
        queues.pause_for_failure(job_type, run_id, job_id, message)
    lines = ctx.lines if ctx is not None else lines
    if lines:
        db.session.execute(_INSERT_LINES, [
            {"run_id": run_id, "seq": line["seq"], "at": line["at"], "level": line["level"],
             "message": line["message"]} for line in lines
        ])
    if ctx is not None and ctx.files:
        db.session.add_all(RunFile(run_id=run_id, job_id=job_id, name=f.name, path=f.path, size=f.size,
                                   sha256=f.sha256, content_type=f.content_type, dataset_id=f.dataset_id,
                                   dataset_name=f.dataset_name, file_format=f.file_format) for f in ctx.files)
    # A run that ran was the job's only active one, so only a waiting run can follow it.
    following = pick_next(job_id, check_busy=ctx is None, job_type=job_type)
    reports = ctx.reports if ctx is not None else db.session.scalar(select(Job.report_enabled)
                                                                     .where(Job.id == job_id))
    if audit is not None:
        audit()
    return Ending(Ended(run_id, job_id, status, bool(reports), job_type), following)


@functools.cache
def _end_statement(columns: tuple[str, ...]):
    """UPDATE of a run's end, for one set of columns, built once (a run ends in one of three
    shapes: with the horse's outcome, with lines kept in Redis, or with neither)."""
    runs = Run.__table__
    return (update(runs).where(runs.c.id == bindparam("run_id"), runs.c.status.in_(bindparam("only", expanding=True)))
            .values({name: bindparam(f"new_{name}") for name in columns}))


_INSERT_LINES = insert(RunLogLine.__table__)


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


# --- hand-over and enqueue -------------------------------------------------------------------

def release_next(job_id: int):
    """Hand the oldest waiting run of the job to RQ, if nothing of the job is active there."""
    waiting = pick_next(job_id, job_type=Job.lock(job_id))
    db.session.commit()
    if waiting is not None:
        enqueue(waiting)
    return waiting


def pick_next(job_id: int, check_busy: bool = True, job_type: str | None = None) -> Run | None:
    """Inside a transaction holding the job's lock: mark the oldest waiting run of the job as
    handed to RQ, unless a run of the job is in progress or already handed over, or its queue
    does not take it now (paused; on a serial queue, the queue's oldest waiting run is next,
    whichever its job). The caller commits, then enqueues it."""
    queue = queues.queue_of(job_type) if job_type is not None else None
    if queue is not None and queues.is_serial(queue):
        return queues.next_for_serial(queue)
    if check_busy and db.session.scalar(_BUSY, {"job_id": job_id}) is not None:
        return None
    # Its id first (plain SQL): most ends find none, and an ORM query costs several times more.
    waiting_id = db.session.scalar(_NEXT_WAITING, {"job_id": job_id})
    waiting = db.session.get(Run, waiting_id) if waiting_id is not None else None
    if waiting is not None and queue is not None and not queues.Gates([queue]).admits(queue):
        return None  # its queue is paused: resume hands it over
    if waiting is not None:
        waiting.enqueued_at = utcnow()
    return waiting


# Built once: a run's end asks them every time.
_RUNS = Run.__table__.c
_BUSY = select(_RUNS.id).where(_RUNS.job_id == bindparam("job_id"), (_RUNS.status == RunStatus.IN_PROGRESS)
                               | ((_RUNS.status == RunStatus.QUEUED) & _RUNS.enqueued_at.isnot(None))).limit(1)
_NEXT_WAITING = (select(_RUNS.id).where(_RUNS.job_id == bindparam("job_id"), _RUNS.status == RunStatus.QUEUED,
                                        _RUNS.enqueued_at.is_(None)).order_by(_RUNS.id).limit(1))


def enqueue(run: Run) -> bool:
    """Put the run on its job type's RQ queue (idempotent: the RQ job id is the run's).

    If Redis is away the run stays queued in the database with enqueued_at set, and the
    scheduler's housekeeping hands it to RQ again once Redis answers: nothing is lost. A run
    whose job type is not installed fails at once, with that reason, instead of waiting for ever."""
    try:
        job_type = registry.get(run.job.job_type)
    except registry.UnknownJobType as exc:
        log.warning("run=%s cannot start: %s", run.id, exc)
        finish_run(run.id, RunStatus.FAILED, f"{exc} The run could not start.", only=(RunStatus.QUEUED,))
        return False
    queue = Queue(job_type.queue, connection=redis_client.conn)
    try:
        _enqueue_on(queue, run.id, run.job.name, job_type)
        return True
    except RedisError as exc:
        log.warning("could not enqueue run=%s (%s); it will be handed over when Redis is back", run.id, exc)
        return False


def _enqueue_on(queue, run_id, job_name, job_type):
    queue.enqueue(RUNNER, run_id, job_timeout=job_type.timeout, **_rq_options(run_id, job_name))


def _rq_options(run_id, job_name) -> dict:
    return {"job_id": run_job_id(run_id), "result_ttl": 600, "failure_ttl": 7 * 86400,
            "description": f"{job_name} (run {run_id})"}


def enqueue_many(items):
    """(run id, job name, job type) triples onto their queues in one pipeline; if Redis fails, the
    runs stay queued in the database and housekeeping hands them over when Redis answers."""
    by_queue = {}
    for run_id, job_name, job_type in items:
        by_queue.setdefault(job_type.queue, []).append(
            Queue.prepare_data(RUNNER, (run_id,), timeout=job_type.timeout, **_rq_options(run_id, job_name)))
    try:
        with redis_client.conn.pipeline(transaction=False) as pipe:
            for name, datas in by_queue.items():
                Queue(name, connection=redis_client.conn).enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    except RedisError as exc:
        log.warning("could not enqueue %s runs (%s); they are handed over when Redis is back", len(items), exc)


# --- cancel ---------------------------------------------------------------------------------

def cancel_run(run: Run, user=None) -> str:
    """Cancel a waiting run at once; ask a running one to stop (killed after a grace period)."""
    def audit():
        record("cancel", "run", run, actor=user, object_name=run.job.name, domain_id=run.job.domain_id)

    if run.status == RunStatus.QUEUED:
        # The cancel and its audit record commit together, or neither does.
        if finish_run(run.id, RunStatus.CANCELLED, f"Cancelled by {getattr(user, 'username', 'system')} "
                                                   "before it started.", only=(RunStatus.QUEUED,), audit=audit):
            _remove_from_rq(run)
            return "cancelled"
        db.session.refresh(run)
    if run.status == RunStatus.IN_PROGRESS:
        db.session.execute(update(Run).where(Run.id == run.id, Run.cancel_requested_at.is_(None))
                           .values(cancel_requested_at=utcnow(), cancel_requested_by_id=getattr(user, "id", None)))
        audit()
        db.session.commit()
        try:
            livelog.request_cancel(redis_client.conn, run.id)
        except RedisError:
            log.warning("cancel of run=%s recorded; Redis away, housekeeping will pass it on", run.id)
        return "stopping"
    return "finished"


def _remove_from_rq(run: Run):
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job as RQJob

    try:
        RQJob.fetch(run_job_id(run.id), connection=redis_client.conn).cancel()
    except (NoSuchJobError, InvalidJobOperation, RedisError):
        # Gone, cancelled already, or Redis away: the claim in the runner refuses a cancelled
        # run anyway.
        pass


def grace_expired(run: Run, now=None) -> bool:
    now = now or utcnow()
    grace = timedelta(seconds=current_app.config["CANCEL_GRACE_SECONDS"])
    return run.cancel_requested_at is not None and now - run.cancel_requested_at >= grace
