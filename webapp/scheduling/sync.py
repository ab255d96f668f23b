"""The database holds each job's plan and next fire time; rq-scheduler holds that next
occurrence as a one-shot entry. This module keeps the two in step, and rebuilds Redis
from the database (on start, every minute, and after Redis was emptied).

An occurrence is wholly told by its entry in the sorted set (member: the job, score: the fire
time), so the scheduler fires one whose RQ job hash was lost from the entry alone, and resync
compares the sorted set with the database, never the 10,000 hashes one by one."""
import logging
import math
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

from flask import current_app
from rq_scheduler import Scheduler
from rq_scheduler.utils import to_unix
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from webapp.execution.isolation import each
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job, JobState
from webapp.models.types import utcnow
from webapp.scheduling.plans import Plan, parse_plan

log = logging.getLogger(__name__)
OCCURRENCE_PREFIX = "firetime-occ-"
OCCURRENCE_QUEUE = "firetime-occurrences"  # never worked by a worker: the scheduler fires inline
FIRE = "webapp.execution.dispatch.fire_occurrence"


def timezone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def job_plan(job: Job) -> Plan:
    """The job's plan; only an automatic plan needs its job type (which declares it)."""
    automatic = registry.get(job.job_type).automatic_plan if (job.plan or {}).get("kind") == "automatic" else None
    return parse_plan(job.plan, automatic=automatic)


def next_fire(job: Job, after: datetime) -> datetime | None:
    if not job.schedulable:
        return None
    try:
        plan = job_plan(job)
    except registry.UnknownJobType:
        return None  # an automatic plan went with its job type, and comes back with it
    return plan.next_after(after, timezone())


def first_fire(job: Job, now: datetime | None = None) -> datetime | None:
    """The first fire time of a newly saved or restored plan (interval plans fire at once)."""
    now = (now or utcnow()).replace(microsecond=0)
    return next_fire(job, after=now - timedelta(seconds=1))


def scheduler(conn=None, cls=Scheduler, **kwargs) -> Scheduler:
    return cls(queue_name=OCCURRENCE_QUEUE, connection=conn or redis_client.conn, **kwargs)


def occurrence_id(job_id: int) -> str:
    return f"{OCCURRENCE_PREFIX}{job_id}"


def place(job: Job, conn=None):
    """Make rq-scheduler hold exactly the job's next occurrence (or nothing): one round trip."""
    conn = conn or redis_client.conn
    at = job.next_fire_at if job.schedulable else None
    with conn.pipeline(transaction=False) as pipe:
        occurrence_entry(pipe, job.id, job.name, at)
        pipe.execute()


def occurrence_entry(pipe, job_id: int, name: str, at: datetime | None):
    """Queue on pipe the writes that make rq-scheduler hold the job's occurrence at `at`, or none."""
    sched = scheduler()
    if at is None:
        pipe.zrem(sched.scheduled_jobs_key, occurrence_id(job_id))
    else:
        _stage(pipe, sched, job_id, name, at)


def _stage(pipe, sched, job_id: int, name: str, at: datetime):
    """Queue on pipe what rq-scheduler's enqueue_at writes: the occurrence's job hash and its
    entry in the sorted set (times rounded down to the second, as rq-scheduler reads them)."""
    rq_job = _occurrence_job(sched, job_id, at, f"next occurrence of {name}")
    rq_job.save(pipeline=pipe)
    pipe.zadd(sched.scheduled_jobs_key, {rq_job.id: to_unix(at)})


def _occurrence_job(sched, job_id: int, at: datetime, description: str):
    return sched._create_job(FIRE, args=(job_id, at.isoformat()), id=occurrence_id(job_id),
                             queue_name=OCCURRENCE_QUEUE, description=description, commit=False)


def occurrence_from_entry(sched, member: str, score: float):
    """The RQ job (unsaved) of an occurrence whose job hash Redis lost, from its entry alone; None
    if the member is not an occurrence."""
    if not member.startswith(OCCURRENCE_PREFIX):
        return None
    job_id = int(member[len(OCCURRENCE_PREFIX):])
    at = datetime.fromtimestamp(score, dt_timezone.utc)
    return _occurrence_job(sched, job_id, at, f"occurrence of job {job_id}, read from its entry")


BATCH = 500  # entries a pipeline: one round trip each, never one per job


def _batches(items: list) -> list[list]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def _fix_next_fire_times(now: datetime):
    """Jobs whose stored next fire time disagrees with their state: schedulable without one
    (new, restored, or a fire that could not compute it), or not schedulable with one. Few,
    normally; jobs without a plan are left out, they never get a fire time."""
    kind = Job.plan["kind"].as_string()
    needing = db.session.scalars(Job.live().where(or_(
        and_(Job.state == JobState.ACTIVE, Job.next_fire_at.is_(None), or_(kind.is_(None), kind != "disabled")),
        and_(Job.state != JobState.ACTIVE, Job.next_fire_at.isnot(None))))).all()

    def fix(job):
        job.next_fire_at = first_fire(job, now) if job.schedulable else None

    each(needing, fix, "computing the next occurrence", rollback=False)
    db.session.commit()


def resync(now: datetime | None = None) -> dict:
    """Make rq-scheduler hold exactly each schedulable job's next occurrence, as the database
    says. Idempotent, and cheap when nothing changed: one read of (id, name, time) per job, one
    read of the sorted set, and only missing or wrong entries are written, in pipelined
    batches. A lost job hash is not looked for: the scheduler fires such an entry all the same."""
    now = now or utcnow()
    conn = redis_client.conn
    sched = scheduler(conn)
    key = sched.scheduled_jobs_key
    _fix_next_fire_times(now)
    # Redis first, the database last: a fire or an edit between the two reads then shows as an
    # entry to write again with the database's newer time, never as a fired occurrence put back
    # or a newly placed one taken for a stray.
    held = {member.decode(): score for member, score in conn.zrange(key, 0, -1, withscores=True)}
    rows = db.session.execute(select(Job.id, Job.name, Job.next_fire_at).where(
        Job.deleted_at.is_(None), Job.state == JobState.ACTIVE, Job.next_fire_at.isnot(None))).all()
    db.session.commit()
    wanted = {occurrence_id(row.id): row for row in rows}
    # Scores are whole seconds, rounded down as rq-scheduler's to_unix does (aware times).
    wrong = [row for member, row in wanted.items() if held.get(member) != math.floor(row.next_fire_at.timestamp())]

    def place_batch(batch) -> int:
        with conn.pipeline(transaction=False) as pipe:
            for row in batch:
                _stage(pipe, sched, row.id, row.name, row.next_fire_at)
            pipe.execute()
        return len(batch)

    placed = each(_batches(wrong), place_batch, "placing occurrences", rollback=False)
    stray = [member for member in held if member.startswith(OCCURRENCE_PREFIX) and member not in wanted]
    each(_batches(stray), lambda batch: conn.zrem(key, *batch), "removing stray occurrences", rollback=False)
    if placed or stray:
        log.info("resync placed=%s removed=%s kept=%s", placed, len(stray), len(wanted) - placed)
    return {"placed": placed, "removed": len(stray), "kept": len(wanted) - placed}


def reschedule(job: Job):
    """After a plan, state or restore change: compute the next fire time and place it."""
    job.next_fire_at = first_fire(job) if job.schedulable else None
    db.session.commit()
    place(job)


def ensure_system_jobs() -> list[Job]:
    """One live job for every system job a job type declares in code."""
    from webapp.models import Scope

    created = []
    for job_type in registry.all_types():
        spec = job_type.system_job
        if spec is None:
            continue
        exists = db.session.scalar(Job.live().where(Job.job_type == job_type.key, Job.system.is_(True)))
        if exists is not None:
            continue
        job = Job(name=spec.name, description=spec.description, job_type=job_type.key,
                  scope=Scope.INSTALLATION, plan={"kind": "automatic"}, system=True, params={})
        db.session.add(job)
        try:
            db.session.commit()
        except IntegrityError:  # another scheduler made it first, or a user job has the name
            db.session.rollback()
            log.warning("system job %r not created: its name is taken", spec.name)
            continue
        created.append(job)
    for job in created:
        reschedule(job)
    return created
