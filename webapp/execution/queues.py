"""Queues as administrators steer them (S4): pause, resume, clear, pause on failure, and serial
queues. The database is the truth (QueueState); RQ's lists only carry what may start now.

Every hand-over of a run to RQ passes the queue's gate (`Gates`): a paused queue takes nothing
new (its new runs wait in the database), and a serial queue has at most one run handed over or
in progress at a time, the oldest waiting one next. Runs that RQ held when a queue was paused
are left there: workers stop listening to a paused queue, and a claim of a run of a paused
queue is refused and puts the run back with the waiting ones (lifecycle.claim). Resume hands
the waiting runs over in the order they were queued, under the overlap rule and the serial rule.

Lock order, as everywhere: the jobs (in id order), then the queue, then runs."""
import logging
from dataclasses import dataclass

from redis.exceptions import RedisError, WatchError
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Job, QueueState, Run, RunStatus, User
from webapp.models.audit import record
from webapp.models.types import utcnow

log = logging.getLogger(__name__)

SYSTEM_QUEUE = "system"
REASON_MAX = 500


class UnknownQueue(LookupError):
    def __str__(self):
        return f"There is no queue named {str(self.args[0])[:64]!r}."


def names() -> list[str]:
    """Every queue a job type declares, plus system and mail (mail last)."""
    found = registry.queue_names()
    if SYSTEM_QUEUE not in found:
        found.insert(-1, SYSTEM_QUEUE)
    return found


def check(name: str) -> str:
    if name not in names():
        raise UnknownQueue(name)
    return name


def types_on(queue: str) -> list[str]:
    return [jt.key for jt in registry.all_types() if jt.queue == queue]


def is_serial(queue: str) -> bool:
    return any(jt.serial_queue for jt in registry.all_types() if jt.queue == queue)


def queue_of(job_type_key: str) -> str | None:
    """The queue a job type runs on; None if it is not installed."""
    try:
        return registry.get(job_type_key).queue
    except registry.UnknownJobType:
        return None


def state(name: str) -> QueueState | None:
    return db.session.get(QueueState, name)


# --- the gate ----------------------------------------------------------------------------------

def _handed_over_or_running():
    return or_(Run.status == RunStatus.IN_PROGRESS,
               and_(Run.status == RunStatus.QUEUED, Run.enqueued_at.isnot(None)))


def busy(queue: str) -> bool:
    """A run of the queue is handed to RQ or in progress (a serial queue's one slot is taken)."""
    return db.session.scalar(select(Run.id).join(Job, Job.id == Run.job_id).where(
        _handed_over_or_running(), Job.job_type.in_(types_on(queue))).limit(1)) is not None


class Gates:
    """Which queues take a run now, read once per transaction: `admits(queue)` says whether the
    next first-in-line run of that queue may be handed over. A serial queue is locked when first
    asked and admits one run at most (none if one is handed over or running already)."""

    def __init__(self, queues):
        queues = set(queues)
        self.paused = set(db.session.scalars(select(QueueState.name).where(
            QueueState.name.in_(queues), QueueState.paused_at.isnot(None)))) if queues else set()
        self.slots: dict[str, bool] = {}

    def admits(self, queue: str | None) -> bool:
        if queue is None:
            return True  # its job type is gone: enqueue() fails the run with the reason
        if queue in self.paused:
            return False
        if not is_serial(queue):
            return True
        if queue not in self.slots:
            QueueState.ensure(queue)
            QueueState.lock(queue)
            self.slots[queue] = not busy(queue)
        free, self.slots[queue] = self.slots[queue], False
        return free


def next_for_serial(queue: str) -> Run | None:
    """Inside a transaction: hand over the oldest waiting run of a serial queue if the queue is
    not paused and nothing of it is handed over or running (the caller commits, then enqueues).
    A retry goes before the runs that were waiting (S4: after a failure, correct the cause, retry
    the job, resume the queue: the retried work is next). A run locked by a concurrent cancel is
    passed over (SKIP LOCKED on PostgreSQL)."""
    if not Gates([queue]).admits(queue):
        return None
    waiting = db.session.scalar(
        select(Run).join(Job, Job.id == Run.job_id)
        .where(Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None), Job.job_type.in_(types_on(queue)))
        .order_by(Run.retry_of_id.is_(None), Run.id).limit(1).with_for_update(skip_locked=True, of=Run))
    if waiting is not None:
        waiting.enqueued_at = utcnow()
    return waiting


def release_waiting(queue: str) -> list[int]:
    """Hand over what may start on the queue now: on a serial queue the oldest waiting run; on
    another, the oldest waiting run of each job with nothing handed over or running, in one
    transaction (the jobs locked in id order) and one Redis round trip. For resume and for
    housekeeping (a hand-over lost in a crash). Returns the run ids handed over."""
    from webapp.execution.dispatch import _lock_in_order
    from webapp.execution.lifecycle import enqueue, enqueue_many

    types = types_on(queue)
    if not types or queue in Gates([queue]).paused:
        db.session.rollback()
        return []
    if is_serial(queue):
        if not _any_held(types):
            db.session.rollback()
            return []  # nothing waits: no need to lock the queue (housekeeping asks every pass)
        run = next_for_serial(queue)
        db.session.commit()
        if run is None:
            return []
        enqueue(run)
        return [run.id]
    job_ids = _stalled_jobs(types)
    db.session.commit()
    if not job_ids:
        return []
    _lock_in_order(job_ids)
    firsts = db.session.execute(
        select(func.min(Run.id), Run.job_id).where(Run.job_id.in_(_stalled_jobs(types, among=job_ids)),
                                                  Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None))
        .group_by(Run.job_id)).all()
    run_ids = sorted(run_id for run_id, _ in firsts)
    if run_ids:
        db.session.execute(update(Run).where(Run.id.in_(run_ids), Run.status == RunStatus.QUEUED)
                           .values(enqueued_at=utcnow()).execution_options(synchronize_session=False))
    names_ = dict(db.session.execute(select(Job.id, Job.name).where(Job.id.in_([job for _, job in firsts]))).all())
    items = [(run_id, names_[job_id], registry.get_or_none(job_type)) for run_id, job_id, job_type in
             db.session.execute(select(Run.id, Run.job_id, Job.job_type).join(Job, Job.id == Run.job_id)
                                .where(Run.id.in_(run_ids)).order_by(Run.id))]
    db.session.commit()
    enqueue_many([item for item in items if item[2] is not None])
    if run_ids:
        log.info("released queue=%s runs=%s", queue, len(run_ids))
    return run_ids


def _any_held(types) -> bool:
    return db.session.scalar(select(Run.id).join(Job, Job.id == Run.job_id).where(
        Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None), Job.job_type.in_(types)).limit(1)) is not None


def _stalled_jobs(types, among=None) -> list[int]:
    """Jobs of these types with a waiting run and nothing handed over or running: two seeks per
    job on ix_runs_status_job, whatever the history."""
    active = aliased(Run)
    query = (select(Run.job_id).join(Job, Job.id == Run.job_id)
             .where(Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None), Job.job_type.in_(types),
                    ~exists().where(active.job_id == Run.job_id, or_(
                        active.status == RunStatus.IN_PROGRESS,
                        and_(active.status == RunStatus.QUEUED, active.enqueued_at.isnot(None)))))
             .distinct())
    if among is not None:
        return query.where(Run.job_id.in_(among))
    return sorted(db.session.scalars(query))


# --- pause, resume, clear ------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What an action did, in a sentence for the page or the command line."""

    message: str
    changed: bool
    count: int = 0


def pause(queue: str, user=None, reason: str = "", failed_run: Run | None = None) -> Outcome:
    """Pause the queue: runs in progress finish, nothing new starts on any worker. Audited."""
    check(queue)
    reason = " ".join((reason or "").replace("\x00", "").split())[:REASON_MAX]
    row = QueueState.ensure(queue)
    QueueState.lock(queue)
    db.session.refresh(row)
    if row.paused:
        db.session.rollback()
        return Outcome(f"Queue {queue} was already paused.", False)
    row.paused_at = utcnow()
    row.paused_by_id = getattr(user, "id", None)
    row.paused_by_name = getattr(user, "username", None) or "system"
    row.reason = reason
    row.paused_run_id = getattr(failed_run, "id", None)
    record("pause", "queue", None, actor=user, object_name=queue, after={"reason": reason} if reason else None,
           run=failed_run)
    db.session.commit()
    log.info("queue paused queue=%s by=%s", queue, row.paused_by_name)
    return Outcome(f"Queue {queue} is paused: runs in progress finish, nothing new starts.", True)


def resume(queue: str, user=None) -> Outcome:
    """Resume the queue and hand its waiting runs over in the order they were queued. Audited."""
    check(queue)
    row = QueueState.ensure(queue)
    QueueState.lock(queue)
    db.session.refresh(row)
    if not row.paused:
        db.session.rollback()
        return Outcome(f"Queue {queue} was not paused.", False)
    before = {"paused_by": row.paused_by_name, "paused_at": row.paused_at.isoformat(), "reason": row.reason}
    row.paused_at = None
    row.paused_by_id = None
    row.paused_by_name = ""
    row.reason = ""
    row.paused_run_id = None
    record("resume", "queue", None, actor=user, object_name=queue, before=before)
    db.session.commit()
    started = release_waiting(queue)
    log.info("queue resumed queue=%s released=%s", queue, len(started))
    waiting = f" {len(started)} waiting run{'s' if len(started) != 1 else ''} handed to the workers." if started else ""
    return Outcome(f"Queue {queue} is running again.{waiting}", True, len(started))


def clear(queue: str, user=None) -> Outcome:
    """Cancel every waiting run of the queue (runs in progress go on), in one statement, each
    recorded cancelled by the user; one audit record for the clear. Their RQ jobs are taken off
    the queue's list (a claim refuses a cancelled run anyway)."""
    check(queue)
    types = types_on(queue)
    if not types:
        return Outcome(f"Queue {queue} holds no runs: nothing to clear.", False)
    who = getattr(user, "username", None) or "system"
    now = utcnow()
    jobs_of_queue = select(Job.id).where(Job.job_type.in_(types)).scalar_subquery()
    cleared = list(db.session.scalars(
        update(Run).where(Run.status == RunStatus.QUEUED, Run.job_id.in_(jobs_of_queue))
        .values(status=RunStatus.CANCELLED, finished_at=now,
                message=f"Cancelled by {who} before it started: queue {queue} cleared.")
        .returning(Run.id).execution_options(synchronize_session=False)))
    if cleared:
        # The jobs whose latest run was cleared show it (Job.last_status).
        latest = aliased(Run)
        db.session.execute(update(Job).where(Job.job_type.in_(types), Job.last_status == RunStatus.QUEUED,
                                             exists().where(latest.id == Job.last_run_id,
                                                            latest.status == RunStatus.CANCELLED))
                           .values(last_status=RunStatus.CANCELLED, updated_at=Job.updated_at)
                           .execution_options(synchronize_session=False))
        record("clear", "queue", None, actor=user, object_name=queue, after={"cancelled": len(cleared)})
    db.session.commit()
    if cleared:
        _drop_from_rq(queue, cleared)
        log.info("queue cleared queue=%s cancelled=%s", queue, len(cleared))
    n = len(cleared)
    return Outcome(f"Queue {queue} is cleared: {n} waiting run{'s' if n != 1 else ''} cancelled."
                   if n else f"Queue {queue} had no waiting run: nothing cancelled.", bool(n), n)


def _drop_from_rq(queue: str, run_ids: list[int]) -> None:
    """Take the cancelled runs' jobs off RQ's list (kept in order; jobs enqueued meanwhile stay)."""
    from rq import Queue

    from webapp.execution.rqjobs import run_job_id

    gone = {run_job_id(run_id) for run_id in run_ids}
    rq_queue = Queue(queue, connection=redis_client.conn)
    try:
        with redis_client.conn.pipeline() as pipe:
            for _ in range(5):
                try:
                    pipe.watch(rq_queue.key)
                    kept = [job_id for job_id in (x.decode() for x in pipe.lrange(rq_queue.key, 0, -1))
                            if job_id not in gone]
                    pipe.multi()
                    pipe.delete(rq_queue.key)
                    if kept:
                        pipe.rpush(rq_queue.key, *kept)
                    pipe.execute()
                    break
                except WatchError:
                    continue
        with redis_client.conn.pipeline(transaction=False) as pipe:
            for job_id in gone:
                pipe.delete(f"rq:job:{job_id}")
            pipe.execute()
    except RedisError as exc:  # the runs are cancelled in the database: a worker that takes one does nothing
        log.warning("could not take cleared runs off RQ queue=%s (%s)", queue, exc)


def set_pause_on_failure(queue: str, on: bool, user=None) -> Outcome:
    check(queue)
    row = QueueState.ensure(queue)
    if row.pause_on_failure == bool(on):
        db.session.rollback()
        return Outcome(f"Pause on failure was already {'on' if on else 'off'} for queue {queue}.", False)
    row.pause_on_failure = bool(on)
    record("update", "queue", None, actor=user, object_name=queue, before={"pause_on_failure": not on},
           after={"pause_on_failure": bool(on)})
    db.session.commit()
    return Outcome(f"Pause on failure is {'on' if on else 'off'} for queue {queue}.", True)


# --- pause on failure ---------------------------------------------------------------------------

def pause_for_failure(job_type: str | None, run_id: int, job_id: int, message: str) -> bool:
    """Inside the transaction that ends a failed run (lifecycle.end_run): pause its queue if the
    queue asks for it. In the same transaction, so that nothing of the queue is handed over or
    claimed after the failure: not the job's next waiting run (handed over in that transaction),
    not the run a worker claims with that end (the claim reads the pause). True if it paused."""
    queue = queue_of(job_type) if job_type else None
    row = db.session.get(QueueState, queue) if queue else None
    if row is None or not row.pause_on_failure:
        return False
    QueueState.lock(queue)
    db.session.refresh(row)
    if row.paused:
        return False
    name = db.session.scalar(select(Job.name).where(Job.id == job_id)) or f"job {job_id}"
    error = " ".join((message or "no message").split())[:300]
    row.paused_at = utcnow()
    row.paused_by_id, row.paused_by_name = None, "system"
    row.reason = f"Run #{run_id} of {name} failed: {error}"[:REASON_MAX]
    row.paused_run_id = run_id
    record("pause", "queue", None, actor=None, object_name=queue, after={"reason": row.reason},
           run=_RunRef(run_id))
    db.session.flush()
    log.info("queue paused queue=%s by=system run=%s (pause on failure)", queue, run_id)
    return True


@dataclass(frozen=True)
class _RunRef:
    id: int


def tell_paused(ended) -> None:
    """A finish hook: if this failed run paused its queue, each superadmin gets an email."""
    if ended.status != RunStatus.FAILED:
        return
    queue = db.session.scalar(select(QueueState.name).where(QueueState.paused_run_id == ended.run_id))
    db.session.commit()
    if queue is not None:
        from webapp.execution import notify

        notify.tell_superadmins_paused(queue, ended.run_id)


def superadmins() -> list[User]:
    from webapp.models import Role

    return list(db.session.scalars(select(User).where(User.role == Role.SUPERADMIN, User.active.is_(True),
                                                      User.email.isnot(None), User.email != "")
                                    .order_by(User.id)))

