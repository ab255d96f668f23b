"""What a queued run waits for, in the words of its page: its queue to be resumed, its turn on a
serial queue, a run of the same job ahead of it (the overlap rule holds it in the database until
that one ends), or a free worker on its job type's RQ queue, at a position there. Redis down is
an answer too: the position is unknown."""
from dataclasses import dataclass

from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import select

from webapp.execution.rqjobs import run_job_id
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.execution import queues
from webapp.models import Job, QueueState, Run, RunStatus
from webapp.models.runs import ACTIVE_STATUSES


@dataclass(frozen=True)
class Waiting:
    """kind: "paused" (queue), "serial" (queue, run_id: the run of the serial queue ahead),
    "behind" (run_id: the run of the same job ahead), "queue" (queue, position from 1),
    "starting" (handed to a worker, or about to be), "unknown" (queue; Redis does not answer),
    "no_type" (no installed job type: the run cannot start)."""

    kind: str
    run_id: int | None = None
    queue: str | None = None
    position: int | None = None


def waiting_for(run: Run) -> Waiting | None:
    """Why the run has not started; None for a run that is not queued."""
    if run.status != RunStatus.QUEUED:
        return None
    job_type = registry.get_or_none(run.job.job_type)
    queue_name = job_type.queue if job_type is not None else None
    if queue_name is not None and queue_name in QueueState.paused_names():
        return Waiting("paused", queue=queue_name)
    if run.enqueued_at is None and queue_name is not None and queues.is_serial(queue_name):
        return Waiting("serial", queue=queue_name, run_id=_run_ahead(run, queues.types_on(queue_name)))
    if run.enqueued_at is None:  # held back by the overlap rule
        return Waiting("behind", run_id=_run_ahead(run))
    if queue_name is None:
        return Waiting("no_type")
    try:
        position = Queue(queue_name, connection=redis_client.conn).get_job_position(run_job_id(run.id))
    except RedisError:
        return Waiting("unknown", queue=queue_name)
    if position is None:  # taken by a worker this instant, or Redis lost it and housekeeping re-enqueues
        return Waiting("starting", queue=queue_name)
    return Waiting("queue", queue=queue_name, position=position + 1)


def _run_ahead(run: Run, types_on_queue=None) -> int | None:
    """The active run just ahead of this one (the one it waits for first): of the same job, or
    of any job of its serial queue (`types_on_queue`)."""
    active = select(Run.id).where(Run.status.in_(ACTIVE_STATUSES), Run.id != run.id)
    if types_on_queue is None:
        active = active.where(Run.job_id == run.job_id)
    else:
        active = active.join(Job, Job.id == Run.job_id).where(Job.job_type.in_(types_on_queue))
    ahead = db.session.scalar(active.where(Run.id < run.id).order_by(Run.id.desc()).limit(1))
    return ahead if ahead is not None else db.session.scalar(active.order_by(Run.id).limit(1))
