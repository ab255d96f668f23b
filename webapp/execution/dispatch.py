"""From an occurrence or a request to a Run row and an RQ job, under the overlap rule:
a job never has two runs in progress; a run asked for by hand waits behind the active one;
a planned fire that finds one active is recorded as skipped."""
import logging
from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job, JobState, Run, RunStatus, Trigger
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.audit import record
from webapp.models.types import utcnow

log = logging.getLogger(__name__)
RUNNER = "webapp.execution.runner.execute"


class NotRunnable(Exception):
    """The job cannot be run now (removed, archived, deleted, its job type not installed): a
    conflict, not bad input."""


def request_run(job: Job, *, trigger=Trigger.HAND, user=None, args: str = "") -> Run:
    """Queue a run asked for by a person, the API or the CLI; it waits behind an active run."""
    try:
        job_type = registry.get(job.job_type)
    except registry.UnknownJobType as exc:
        raise NotRunnable(f"Job {job.name!r} cannot run: {exc} Install it again, or delete the job.") from None
    job_type.params_for_run(job.params, args)  # refuse bad arguments now
    Job.lock(job.id)
    db.session.refresh(job)  # as it is now, under the lock (not removed meanwhile)
    if not job.is_live or job.state != JobState.ACTIVE:
        db.session.rollback()
        state = "deleted" if not job.is_live else job.state
        raise NotRunnable(f"Job {job.name!r} is {state}; restore it before running it.")
    ahead = db.session.scalar(Run.active_for(job.id).limit(1))
    run = Run(job_id=job.id, trigger=trigger, requested_by_id=getattr(user, "id", None), args=args or "")
    if ahead is None:
        run.enqueued_at = utcnow()
    db.session.add(run)
    db.session.flush()
    record("run_now", "job", job, actor=user, after={"run_id": run.id, "args": run.args, "trigger": trigger})
    db.session.commit()
    log.info("run requested run=%s job=%s trigger=%s waiting=%s", run.id, job.id, trigger, ahead is not None)
    if run.enqueued_at:
        enqueue(run)
    return run


def request_runs(jobs, trigger=Trigger.HAND, user=None) -> tuple[list[int], list[str]]:
    """Queue one run of each job under request_run's rules, for many jobs at once ("Run
    selected"): one transaction (the jobs locked in id order, one query for those with an active
    run, runs and audit records inserted together) and one Redis round trip for the runs first
    in line. A job that cannot run is reported, not fatal. Returns (run ids, refusals)."""
    refused, runnable = [], {}
    for job in jobs:
        try:
            job_type = registry.get(job.job_type)
            job_type.params_for_run(job.params, "")
            runnable[job.id] = (job, job_type)
        except registry.UnknownJobType as exc:
            refused.append(f"Job {job.name!r} cannot run: {exc} Install it again, or delete the job.")
        except registry.InvalidArguments as exc:
            refused.append(f"Job {job.name!r} cannot run: {exc}")
    ids = sorted(runnable)
    if not ids:
        return [], refused
    _lock_in_order(ids)
    states = {row.id: row for row in db.session.execute(
        select(Job.id, Job.state, Job.deleted_at).where(Job.id.in_(ids)))}
    for job_id in list(ids):
        row = states.get(job_id)
        if row is None or row.deleted_at is not None or row.state != JobState.ACTIVE:
            state = "deleted" if row is None or row.deleted_at is not None else row.state
            refused.append(f"Job {runnable[job_id][0].name!r} is {state}; restore it before running it.")
            ids.remove(job_id)
    busy = set(db.session.scalars(select(Run.job_id).where(Run.status.in_(ACTIVE_STATUSES), Run.job_id.in_(ids))))
    now = utcnow()
    runs = [Run(job_id=job_id, trigger=trigger, requested_by_id=getattr(user, "id", None), args="",
                enqueued_at=None if job_id in busy else now) for job_id in ids]
    db.session.add_all(runs)
    db.session.flush()
    for run in runs:
        record("run_now", "job", runnable[run.job_id][0], actor=user,
               after={"run_id": run.id, "args": "", "trigger": trigger})
    # Read before the commit expires them: no reload per job afterwards.
    first_in_line = [(run.id, runnable[run.job_id][0].name, runnable[run.job_id][1]) for run in runs
                     if run.enqueued_at]
    run_ids = [run.id for run in runs]
    db.session.commit()
    log.info("runs requested count=%s enqueued=%s trigger=%s", len(run_ids), len(first_in_line), trigger)
    _enqueue_many(first_in_line)
    return run_ids, refused


def _lock_in_order(job_ids: list[int]):
    """Job.lock for each job, in id order (one statement, many parameter sets): two bulk
    requests over overlapping jobs then wait for each other instead of deadlocking."""
    jobs = Job.__table__
    db.session.execute(update(jobs).where(jobs.c.id == bindparam("lock_id"))
                       .values(dispatch_seq=jobs.c.dispatch_seq + 1, updated_at=jobs.c.updated_at),
                       [{"lock_id": job_id} for job_id in job_ids])


def _enqueue_many(items):
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


def fire_occurrence(job_id: int, fire_at_iso: str):
    """Fire one planned occurrence, at most once whatever the number of schedulers."""
    fire_at = datetime.fromisoformat(fire_at_iso)
    Job.lock(job_id)
    job = db.session.get(Job, job_id, populate_existing=True)
    from webapp.scheduling.sync import next_fire, place

    if job is None or not job.schedulable or job.next_fire_at != fire_at:
        # Stale: the plan changed or another scheduler fired it. A place() of the new time may
        # have raced the scheduler's removal of this entry, so put the current one back.
        db.session.rollback()
        if job is not None and job.schedulable and job.next_fire_at is not None:
            place(job)
        return None
    now = utcnow()
    if _claimed(job.id, fire_at):
        # Already claimed (skipped by hand, then the plan was restored to this time): move on.
        job.next_fire_at = next_fire(job, after=max(fire_at, now))
        db.session.commit()
        place(job)
        return None
    ahead = db.session.scalar(Run.active_for(job.id).limit(1))
    run = Run(job_id=job.id, trigger=Trigger.PLAN, occurrence_at=fire_at)
    if ahead is None:
        run.enqueued_at = now
    else:
        run.status, run.finished_at = RunStatus.SKIPPED, now
        run.message = f"Skipped: run #{ahead.id} of this job was still {ahead.status_label.lower()}."
    job.prev_fire_at = fire_at
    job.next_fire_at = next_fire(job, after=max(fire_at, now))
    db.session.add(run)
    try:
        db.session.flush()
        # What the Redis side needs, read before the commit expires it (no reloads after).
        after = (job.id, job.name, job.job_type, job.next_fire_at, run.id if run.enqueued_at else None)
        fired = f"job={job.id} at={fire_at_iso} run={run.id} status={run.status}"
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    log.info("occurrence fired %s", fired)
    _place_and_enqueue(*after)
    return run


def _place_and_enqueue(job_id, name, job_type_key, next_at, run_id):
    """One Redis round trip after a fire: the job's next occurrence, and its run on RQ. If Redis
    fails, the next resync places the occurrence and housekeeping hands the run over."""
    from webapp.scheduling.sync import occurrence_entry

    try:
        job_type = registry.get(job_type_key) if run_id else None
    except registry.UnknownJobType:
        job_type = None  # enqueue() below fails the run with the reason
    try:
        with redis_client.conn.pipeline(transaction=False) as pipe:
            if job_type is not None:  # first: RQ starts a MULTI on the pipeline it is given
                _enqueue_on(Queue(job_type.queue, connection=redis_client.conn), run_id, name, job_type, pipe)
            occurrence_entry(pipe, job_id, name, next_at)
            pipe.execute()
    except RedisError as exc:
        log.warning("could not place the next occurrence of job=%s or enqueue run=%s (%s); housekeeping will",
                    job_id, run_id, exc)
    if run_id and job_type is None:
        enqueue(db.session.get(Run, run_id))


def _claimed(job_id: int, occurrence) -> bool:
    return db.session.scalar(select(Run.id).where(Run.job_id == job_id, Run.occurrence_at == occurrence)) is not None


def skip_next_occurrence(job: Job, user=None) -> Run | None:
    """Cancel the job's next planned occurrence only; its plan moves to the one after."""
    from webapp.scheduling.sync import next_fire, place

    Job.lock(job.id)
    db.session.refresh(job)
    if not job.schedulable or job.next_fire_at is None:
        db.session.rollback()
        return None
    occurrence = job.next_fire_at
    while occurrence is not None and _claimed(job.id, occurrence):
        # Fired or skipped already (a remove and restore brought the plan back to it): the
        # next occurrence to skip is the one after.
        occurrence = next_fire(job, after=occurrence)
    if occurrence is None:
        db.session.rollback()
        return None
    run = Run(job_id=job.id, trigger=Trigger.PLAN, occurrence_at=occurrence, status=RunStatus.CANCELLED,
              requested_by_id=getattr(user, "id", None), finished_at=utcnow(),
              message=f"Planned occurrence cancelled by {getattr(user, 'username', 'system')}.")
    job.next_fire_at = next_fire(job, after=occurrence)
    db.session.add(run)
    record("cancel", "job", job, actor=user, before={"next_fire_at": occurrence.isoformat()},
           after={"next_fire_at": job.next_fire_at.isoformat() if job.next_fire_at else None})
    db.session.commit()
    place(job)
    return run


def release_next(job_id: int):
    """Hand the oldest waiting run of the job to RQ, if nothing of the job is active there."""
    Job.lock(job_id)
    waiting = pick_next(job_id)
    db.session.commit()
    if waiting is not None:
        enqueue(waiting)
    return waiting


def pick_next(job_id: int, check_busy: bool = True) -> Run | None:
    """Inside a transaction holding the job's lock: mark the oldest waiting run of the job as
    handed to RQ, unless a run of the job is in progress or already handed over. The caller
    commits, then enqueues it."""
    if check_busy and db.session.scalar(
        select(Run.id).where(
            Run.job_id == job_id,
            (Run.status == RunStatus.IN_PROGRESS)
            | ((Run.status == RunStatus.QUEUED) & Run.enqueued_at.isnot(None)),
        ).limit(1)
    ) is not None:
        return None
    waiting = db.session.scalar(
        select(Run).where(Run.job_id == job_id, Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None))
        .order_by(Run.id).limit(1)
    )
    if waiting is not None:
        waiting.enqueued_at = utcnow()
    return waiting


def enqueue(run: Run) -> bool:
    """Put the run on its job type's RQ queue (idempotent: the RQ job id is the run's).

    If Redis is away the run stays queued in the database with enqueued_at set, and the
    scheduler's housekeeping hands it to RQ again once Redis answers: nothing is lost. A run
    whose job type is not installed fails at once, with that reason, instead of waiting for ever."""
    try:
        job_type = registry.get(run.job.job_type)
    except registry.UnknownJobType as exc:
        from webapp.execution.runner import finish_run

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


def _enqueue_on(queue, run_id, job_name, job_type, pipeline=None):
    queue.enqueue(RUNNER, run_id, pipeline=pipeline, job_timeout=job_type.timeout,
                  **_rq_options(run_id, job_name))


def _rq_options(run_id, job_name) -> dict:
    return {"job_id": f"firetime-run-{run_id}", "result_ttl": 600, "failure_ttl": 7 * 86400,
            "description": f"{job_name} (run {run_id})"}


def cancel_run(run: Run, user=None) -> str:
    """Cancel a waiting run at once; ask a running one to stop (killed after a grace period)."""
    from webapp.execution.runner import finish_run

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
        from webapp.execution import livelog

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
        RQJob.fetch(run.rq_job_id, connection=redis_client.conn).cancel()
    except (NoSuchJobError, InvalidJobOperation, RedisError):
        # Gone, cancelled already, or Redis away: the claim in the runner refuses a cancelled
        # run anyway.
        pass


def grace_expired(run: Run, now=None) -> bool:
    now = now or utcnow()
    grace = timedelta(seconds=current_app.config["CANCEL_GRACE_SECONDS"])
    return run.cancel_requested_at is not None and now - run.cancel_requested_at >= grace
