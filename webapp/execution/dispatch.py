"""Creating runs, from an occurrence or a request, under the overlap rule: a job never has two
runs in progress; a run asked for by hand waits behind the active one; a planned fire that finds
one active is recorded as skipped. What happens to a run after that is the lifecycle's."""
import logging
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from webapp.execution.lifecycle import cancel_run  # noqa: F401  (the lifecycle's; the web's views look here)
from webapp.execution.lifecycle import enqueue, enqueue_many
from webapp.execution.queues import Gates
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job, JobState, Run, RunStatus, Trigger
from webapp.models.audit import record
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.types import utcnow

log = logging.getLogger(__name__)


class NotRunnable(Exception):
    """The job cannot be run now (removed, archived, deleted, its job type not installed): a
    conflict, not bad input."""


def request_run(job: Job, *, trigger=Trigger.HAND, user=None, args: str = "", retry_of: Run | None = None,
                envelope_id: int | None = None) -> Run:
    """Queue a run asked for by a person, the API or the CLI (or a step of an envelope's chain:
    `envelope_id`); it waits behind an active run."""
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
    run = Run(job_id=job.id, trigger=trigger, requested_by_id=getattr(user, "id", None), args=args or "",
              retry_of_id=getattr(retry_of, "id", None), envelope_id=envelope_id)
    if ahead is None and Gates([job_type.queue]).admits(job_type.queue):
        run.enqueued_at = utcnow()  # else it waits in the database: behind a run, or for its queue
    db.session.add(run)
    db.session.flush()
    _became_latest([run], ran_at=run.created_at)
    after = {"run_id": run.id, "args": run.args, "trigger": trigger}
    if retry_of is not None:
        after["retry_of"] = retry_of.id
    record("run_now", "job", job, actor=user, after=after)
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
    gates = Gates({runnable[job_id][1].queue for job_id in ids})
    held = busy | {job_id for job_id in ids if job_id not in busy and not gates.admits(runnable[job_id][1].queue)}
    now = utcnow()
    # One INSERT for all (the ORM would write them one by one, each with its jobs update).
    runs = list(db.session.scalars(insert(Run).returning(Run, sort_by_parameter_order=True), [
        {"job_id": job_id, "trigger": trigger, "requested_by_id": getattr(user, "id", None), "args": "",
         "status": RunStatus.QUEUED, "created_at": now, "enqueued_at": None if job_id in held else now}
        for job_id in ids]))
    _became_latest(runs, ran_at=now)
    for run in runs:
        record("run_now", "job", runnable[run.job_id][0], actor=user,
               after={"run_id": run.id, "args": "", "trigger": trigger})
    # Read before the commit expires them: no reload per job afterwards.
    first_in_line = [(run.id, runnable[run.job_id][0].name, runnable[run.job_id][1]) for run in runs
                     if run.enqueued_at]
    run_ids = [run.id for run in runs]
    db.session.commit()
    log.info("runs requested count=%s enqueued=%s trigger=%s", len(run_ids), len(first_in_line), trigger)
    enqueue_many(first_in_line)
    return run_ids, refused


def _became_latest(runs, ran_at=None) -> None:
    """New runs (not skipped) are now their jobs' latest: Job.last_run_id and last_status follow
    (the jobs list filters and sorts by them), in one statement for all. `ran_at`: previous fire
    = the last time the job ran, whoever started it, so a run asked for by a person, the API, the
    CLI or a retry moves it as a planned fire does. Not an edit of the job: updated_at stays."""
    if not runs:
        return
    jobs = Job.__table__
    values = {"last_run_id": bindparam("b_run"), "last_status": bindparam("b_status"),
              "updated_at": jobs.c.updated_at}
    if ran_at is not None:
        values["prev_fire_at"] = bindparam("b_at", type_=jobs.c.prev_fire_at.type)
    db.session.execute(update(jobs).where(jobs.c.id == bindparam("b_job")).values(**values),
                       [{"b_job": run.job_id, "b_run": run.id, "b_status": run.status, "b_at": ran_at}
                        for run in runs])


def _lock_in_order(job_ids: list[int]):
    """Job.lock for each job, in id order (one statement, many parameter sets): two bulk
    requests over overlapping jobs then wait for each other instead of deadlocking."""
    jobs = Job.__table__
    db.session.execute(update(jobs).where(jobs.c.id == bindparam("lock_id"))
                       .values(dispatch_seq=jobs.c.dispatch_seq + 1, updated_at=jobs.c.updated_at),
                       [{"lock_id": job_id} for job_id in job_ids])


def fire_occurrence(job_id: int, fire_at_iso: str):
    """Fire one planned occurrence, at most once whatever the number of schedulers."""
    return fire_occurrences([(job_id, fire_at_iso)])[0]


def fire_occurrences(occurrences) -> list:
    """Fire planned occurrences [(job id, fire time iso)] of distinct jobs, each at most once
    whatever the number of schedulers, all in one transaction: the jobs locked in id order, one
    query each for the jobs, the occurrences claimed already and the runs active, the runs
    inserted together, one commit; then one Redis round trip for the runs and one for the next
    occurrences. A job that cannot be fired (stale entry, a plan that fails) is left out, never
    the others. Returns each occurrence's run, or None where it did not fire."""
    from webapp.scheduling.sync import next_fire

    wanted = {job_id: datetime.fromisoformat(at) for job_id, at in occurrences}
    ids = sorted(wanted)
    _lock_in_order(ids)
    jobs = {job.id: job for job in db.session.scalars(
        select(Job).where(Job.id.in_(ids)).execution_options(populate_existing=True))}
    claimed = {tuple(row) for row in db.session.execute(select(Run.job_id, Run.occurrence_at).where(
        Run.job_id.in_(ids), Run.occurrence_at.in_(set(wanted.values()))))}
    ahead = {}
    for run in db.session.scalars(select(Run).where(Run.job_id.in_(ids), Run.status.in_(ACTIVE_STATUSES))
                                  .order_by(Run.id)):
        ahead.setdefault(run.job_id, run)
    queue_of = {job.id: getattr(registry.get_or_none(job.job_type), "queue", None) for job in jobs.values()}
    gates = Gates(set(queue_of.values()) - {None})
    now = utcnow()
    rows, places = [], []
    for job_id in ids:
        job, fire_at = jobs.get(job_id), wanted[job_id]
        if job is None or not job.schedulable or job.next_fire_at != fire_at:
            # Stale: the plan changed or another scheduler fired it. A place() of the new time may
            # have raced the scheduler's removal of this entry, so put the current one back.
            if job is not None and job.schedulable and job.next_fire_at is not None:
                places.append((job.id, job.name, job.next_fire_at))
            continue
        try:
            next_at = next_fire(job, after=max(fire_at, now))
        except Exception:
            log.exception("firing occurrence failed job=%s at=%s", job_id, fire_at.isoformat())
            continue
        places.append((job.id, job.name, next_at))
        job.next_fire_at = next_at
        if (job_id, fire_at) in claimed:
            continue  # skipped by hand, then the plan was restored to this time: move on
        job.prev_fire_at = fire_at
        active = ahead.get(job_id)
        row = {"job_id": job_id, "trigger": Trigger.PLAN, "occurrence_at": fire_at, "status": RunStatus.QUEUED,
               "finished_at": None, "message": "", "handed": False}
        queue = queue_of[job_id]
        if active is not None and queue in gates.paused:
            # A paused queue keeps one waiting run a job; later fires are recorded, not stacked.
            row.update(status=RunStatus.SKIPPED, message=f"Skipped: queue {queue} is paused (run #{active.id} of "
                                                         "this job waits for it).")
        elif active is not None:
            row.update(status=RunStatus.SKIPPED, message=f"Skipped: run #{active.id} of this job was still "
                                                         f"{active.status_label.lower()}.")
        else:
            row["handed"] = gates.admits(queue)
        rows.append(row)
    try:
        db.session.flush()  # the jobs' new fire times
        # The runs in one statement (the ORM would insert them one by one), the claim's instant
        # taken now, after the reads and the fire times; what the Redis side needs is read
        # before the commit expires them (no reloads after).
        now = utcnow()
        for row in rows:
            queued = row["status"] == RunStatus.QUEUED
            row.update(created_at=now, enqueued_at=now if row.pop("handed") else None,
                       finished_at=None if queued else now)
        runs = {run.job_id: run for run in db.session.scalars(
            insert(Run).returning(Run), rows)} if rows else {}
        first_in_line = [(run.id, jobs[job_id].name, jobs[job_id].job_type) for job_id, run in runs.items()
                         if run.enqueued_at]
        _became_latest([run for run in runs.values() if run.status != RunStatus.SKIPPED])
        fired = [f"job={run.job_id} at={wanted[run.job_id].isoformat()} run={run.id} status={run.status}"
                 for run in runs.values()]
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if len(ids) == 1:
            return [None]
        # One of them was claimed meanwhile (its lock came too late to stop it): each on its own.
        return [fire_occurrence(job_id, at) for job_id, at in occurrences]
    try:
        _place_and_enqueue(places, first_in_line)  # first: the runs reach RQ sooner
    finally:
        for line in fired:
            log.info("occurrence fired %s", line)
    return [runs.get(job_id) for job_id, _ in occurrences]


def _place_and_enqueue(places, first_in_line):
    """After fires: their runs on RQ in one pipeline, then the jobs' next occurrences in another.
    If Redis fails, the next resync places the occurrences and housekeeping hands the runs over;
    a run whose job type is gone fails at once with the reason."""
    from webapp.scheduling.sync import occurrence_entry

    ready, gone = [], []
    for run_id, name, job_type_key in first_in_line:
        try:
            ready.append((run_id, name, registry.get(job_type_key)))
        except registry.UnknownJobType:
            gone.append(run_id)  # enqueue() below fails the run with the reason
    if ready:
        enqueue_many(ready)
    try:
        with redis_client.conn.pipeline(transaction=False) as pipe:
            for job_id, name, at in places:
                occurrence_entry(pipe, job_id, name, at)
            pipe.execute()
    except RedisError as exc:
        log.warning("could not place the next occurrences of jobs %s (%s); the next resync will",
                    [job_id for job_id, _, _ in places], exc)
    for run_id in gone:
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
    run = Run(job_id=job.id, trigger=Trigger.PLAN, occurrence_at=occurrence, status=RunStatus.SKIPPED,
              requested_by_id=getattr(user, "id", None), finished_at=utcnow(),
              message=f"Skipped by {getattr(user, 'username', 'system')}.")
    job.next_fire_at = next_fire(job, after=occurrence)
    db.session.add(run)
    record("skip", "job", job, actor=user, before={"next_fire_at": occurrence.isoformat()},
           after={"next_fire_at": job.next_fire_at.isoformat() if job.next_fire_at else None})
    db.session.commit()
    place(job)
    return run


