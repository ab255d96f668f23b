"""The scheduler process: rq-scheduler's sorted set, with occurrences fired inline (so a planned
fire never waits for a free worker) by a loop that does nothing else, and housekeeping (reaper,
resync, system jobs, mail sweep) in a thread of its own, so a fire never waits behind it.

The firing loop sleeps until the next entry is due (capped at SCHEDULER_INTERVAL, so an entry
placed meanwhile by another process waits at most that long), instead of polling once an
interval: a fire is late by the work of the fires before it, not by up to a whole interval.
rq-scheduler reads times as whole seconds, and every entry's score is a whole second, so waking
at the score is never early. Only the process holding rq-scheduler's lock fires; only the one
holding the housekeeping lock keeps house; the database claim makes a double fire harmless."""
import logging
import threading
import time
from datetime import datetime
from operator import call

from redis.exceptions import RedisError
from rq_scheduler import Scheduler
from rq_scheduler.utils import to_unix

from webapp.execution import dispatch
from webapp.execution.isolation import each
from webapp.execution.recovery import Reaper
from webapp.extensions import db
from webapp.scheduling import sync

log = logging.getLogger(__name__)
LAST_PASS_KEY = "firetime:scheduler:last_pass"
HOUSEKEEPING_LOCK = "firetime:scheduler:housekeeping"
# A scheduler that finds the firing lock taken tries again this soon: the holder may die.
LOCK_RETRY_SECONDS = 0.25
WAKE_MARGIN = 0.002  # past the due second, so that rq-scheduler's rounding sees it due


class FiretimeScheduler(Scheduler):
    def __init__(self, app, **kwargs):
        super().__init__(queue_name=sync.OCCURRENCE_QUEUE, interval=app.config["SCHEDULER_INTERVAL"], **kwargs)
        self.app = app
        self.housekeeper = Housekeeper(app, self.connection)

    def run(self, burst=False):
        """rq-scheduler's loop, except for when it wakes; housekeeping runs beside it (in burst
        mode: one fire pass, then one housekeeping pass)."""
        self.register_birth()
        self._install_signal_handlers()
        if not burst:
            self.housekeeper.start()
        try:
            while True:
                self.heartbeat()
                if not self.acquire_lock():
                    time.sleep(min(LOCK_RETRY_SECONDS, self._interval))
                    continue
                try:
                    ok = self.enqueue_jobs()
                finally:
                    self.remove_lock()
                if burst:
                    self.housekeeper.pass_once()
                    return
                time.sleep(self.seconds_to_next_due() if ok is not None else self._interval)
        finally:
            self.housekeeper.stop()
            self.remove_lock()
            self.register_death()

    def seconds_to_next_due(self) -> float:
        """How long until the first entry is due, at most an interval (0 if one is due now)."""
        first = self.connection.zrange(self.scheduled_jobs_key, 0, 0, withscores=True)
        if not first:
            return self._interval
        return min(self._interval, max(0.0, first[0][1] - time.time() + WAKE_MARGIN))

    def enqueue_jobs(self):
        """One pass: fire what is due. None if the pass failed (then wait an interval)."""
        with self.app.app_context():
            try:
                fired = self.fire_due()
                self.connection.set(LAST_PASS_KEY, time.time(), ex=120)
                return fired
            except Exception:
                # One bad pass (database or Redis restarting, say) must not end the scheduler.
                log.exception("scheduler pass failed")
                db.session.rollback()
                return None
            finally:
                db.session.remove()

    def get_jobs_to_queue(self, with_times=False):
        """The due entries' RQ jobs, fetched in one round trip (rq-scheduler takes one each)."""
        ids = [member.decode() for member in self.connection.zrangebyscore(
            self.scheduled_jobs_key, 0, to_unix(datetime.utcnow()))]
        jobs = self.job_class.fetch_many(ids, connection=self.connection)
        gone = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
        if gone:
            self.connection.zrem(self.scheduled_jobs_key, *gone)  # as rq-scheduler drops them
        return [job for job in jobs if job is not None]

    def fire_due(self):
        fired = []
        for job in self.get_jobs_to_queue():
            # Removing first means Redis hands an occurrence out once; if this process dies
            # before the fire, the next resync finds the unclaimed next_fire_at and places it.
            if not self.connection.zrem(self.scheduled_jobs_key, job.id):
                continue
            if job.id.startswith(sync.OCCURRENCE_PREFIX):
                try:
                    fired.append(dispatch.fire_occurrence(*job.args))
                except Exception:
                    log.exception("firing occurrence failed id=%s", job.id)
                    db.session.rollback()
            else:
                self.get_queue_for_job(job).enqueue_job(job)
        return fired


class Housekeeper:
    """Reaper, resync, system jobs and the mail sweep, each at its own period, in a thread with
    its own app context (and so its own database session). One scheduler process at a time
    does it (a Redis lock with an owner), and each step on its own: one failing (Redis away, a
    bad job) never skips the others."""

    TICK = 0.5  # seconds between looks at what is due

    def __init__(self, app, connection):
        self.app, self.connection = app, connection
        self.reaper = Reaper()
        self._next_resync = 0.0
        self._next_reap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.pass_once()
            except Exception:  # whatever it is, housekeeping goes on at the next tick
                log.exception("housekeeping pass failed")
            self._stop.wait(self.TICK)

    def due_steps(self) -> list:
        now = time.monotonic()
        steps = []
        if now >= self._next_resync:
            self._next_resync = now + self.app.config["RESYNC_SECONDS"]
            steps += [sync.ensure_system_jobs, sync.resync]
        if now >= self._next_reap:
            self._next_reap = now + self.app.config["REAP_SECONDS"]
            steps.append(self.reaper.run_once)  # with the mail sweep
        return steps

    def pass_once(self):
        lock = self.connection.lock(HOUSEKEEPING_LOCK, timeout=max(60, 2 * self.app.config["RESYNC_SECONDS"]))
        try:
            if not lock.acquire(blocking=False):
                return
        except RedisError as exc:
            log.warning("housekeeping waits for Redis (%s)", exc)
            return
        try:
            with self.app.app_context():
                try:
                    each(self.due_steps(), call, "housekeeping step")
                finally:
                    db.session.remove()
        finally:
            try:
                lock.release()
            except Exception:  # expired, or Redis away: it lapses by itself
                pass


def run_scheduler(app, connection, burst=False):
    """Run until stopped; if Redis goes away, wait for it and carry on. System jobs are created
    by the first housekeeping pass."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    while True:
        try:
            FiretimeScheduler(app, connection=connection).run(burst=burst)
            return
        except (RedisConnectionError, RedisTimeoutError):
            log.warning("scheduler lost Redis; retrying in 2 s")
            time.sleep(2)
