"""The database holds each job's plan and next fire time; rq-scheduler holds that next
occurrence as a one-shot entry. This module keeps the two in step, and rebuilds Redis
from the database (on start, every minute, and after Redis was emptied)."""
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from rq.job import Job as RQJob
from rq_scheduler import Scheduler
from sqlalchemy.exc import IntegrityError

from webapp.execution.isolation import each
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job
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
    """Make rq-scheduler hold exactly the job's next occurrence (or nothing)."""
    sched = scheduler(conn)
    if job.schedulable and job.next_fire_at is not None:
        sched.enqueue_at(job.next_fire_at, FIRE, job.id, job.next_fire_at.isoformat(),
                         job_id=occurrence_id(job.id), queue_name=OCCURRENCE_QUEUE,
                         job_description=f"next occurrence of {job.name}")
    else:
        sched.cancel(occurrence_id(job.id))


def resync(now: datetime | None = None) -> dict:
    """Make rq-scheduler hold exactly each schedulable job's next occurrence, as the database
    says. Idempotent, and cheap when nothing changed: only missing or wrong entries are written."""
    now = now or utcnow()
    conn = redis_client.conn
    sched = scheduler(conn)
    held = {member.decode(): score
            for member, score in conn.zrange(sched.scheduled_jobs_key, 0, -1, withscores=True)}
    wanted = {}

    def want(job):
        if not job.schedulable:
            job.next_fire_at = None
        elif job.next_fire_at is None:
            job.next_fire_at = first_fire(job, now)
        if job.next_fire_at is not None:
            wanted[occurrence_id(job.id)] = (job, job.next_fire_at)  # the time as read, before commit

    each(db.session.scalars(Job.live()).all(), want, "computing the next occurrence", rollback=False)
    db.session.commit()
    with conn.pipeline(transaction=False) as pipe:
        for member in wanted:
            pipe.exists(RQJob.key_for(member))
        hashes_present = dict(zip(wanted, pipe.execute(), strict=True))

    def place_if_wrong(member):
        job, at = wanted[member]
        if held.get(member) == at.timestamp() and hashes_present[member]:
            return False
        place(job, conn)
        return True

    placed = each(list(wanted), place_if_wrong, "placing an occurrence")
    stray = [member for member in held if member.startswith(OCCURRENCE_PREFIX) and member not in wanted]
    each(stray, sched.cancel, "removing a stray occurrence")
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
