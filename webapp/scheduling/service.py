"""The scheduler process: rq-scheduler's sorted set, with occurrences fired inline (so a planned
fire never waits for a free worker) by a loop that does nothing else, and housekeeping (reaper,
resync, system jobs, mail sweep) in a child process of its own, so a fire never waits behind it,
not even for the interpreter: each process has its own.

The firing loop sleeps until the next entry is due (capped at SCHEDULER_INTERVAL, so an entry
placed meanwhile by another process waits at most that long), instead of polling once an
interval, and claims all the occurrences due at that instant in one transaction: a fire is late
by one batch, not by the fires before it one by one. rq-scheduler reads times as whole seconds,
and every entry's score is a whole second, so waking at the score is never early. Only the
process holding rq-scheduler's lock fires; only the one holding the housekeeping lock keeps
house; the database claim makes a double fire harmless."""
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from datetime import datetime
from operator import call

from redis.exceptions import LockNotOwnedError, RedisError
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
HOUSEKEEPING_NICENESS = 5  # added to the housekeeping process's niceness
FIRE_BATCH = 200  # occurrences claimed in one transaction (a backlog after downtime goes in several)


class FiretimeScheduler(Scheduler):
    def __init__(self, app, **kwargs):
        super().__init__(queue_name=sync.OCCURRENCE_QUEUE, interval=app.config["SCHEDULER_INTERVAL"], **kwargs)
        self.app = app
        self.housekeeper = Housekeeper(app, self.connection)
        self.housekeeping = HousekeepingProcess(self.housekeeper)

    def run(self, burst=False):
        """rq-scheduler's loop, except for when it wakes; housekeeping runs beside it (in burst
        mode: one fire pass, then one housekeeping pass)."""
        self.register_birth()
        self._install_signal_handlers()
        if not burst:
            self.housekeeping.start()
        try:
            while True:
                self.heartbeat()
                if not burst:
                    self.housekeeping.keep_alive()
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
            self.housekeeping.stop()
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
        """The due entries' RQ jobs, fetched in one round trip (rq-scheduler takes one each). An
        occurrence whose job hash Redis lost is read from its entry; any other entry without its
        job is dropped, as rq-scheduler drops it."""
        entries = self.connection.zrangebyscore(self.scheduled_jobs_key, 0, to_unix(datetime.utcnow()),
                                                withscores=True)
        ids = [member.decode() for member, _ in entries]
        jobs = self.job_class.fetch_many(ids, connection=self.connection)
        found, gone = [], []
        for job_id, (_, score), job in zip(ids, entries, jobs, strict=True):
            if job is None:
                job = sync.occurrence_from_entry(self, job_id, score)
                if job is None:
                    gone.append(job_id)
                    continue
                log.warning("occurrence %s had lost its job hash; fired from its entry", job_id)
            found.append(job)
        if gone:
            self.connection.zrem(self.scheduled_jobs_key, *gone)
        return found

    def fire_due(self):
        """Claim every due entry in Redis, then fire the occurrences among them in batches (one
        transaction each) and put any other RQ job on its queue."""
        jobs = self.get_jobs_to_queue()
        with self.connection.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.zrem(self.scheduled_jobs_key, job.id)
            removed = pipe.execute()
        # Removing first means Redis hands an occurrence out once; if this process dies before
        # the fire, the next resync finds the unclaimed next_fire_at and places it again.
        mine = [job for job, gone in zip(jobs, removed, strict=True) if gone]
        occurrences = [tuple(job.args) for job in mine if job.id.startswith(sync.OCCURRENCE_PREFIX)]
        fired = []
        for start in range(0, len(occurrences), FIRE_BATCH):
            fired += self.fire_batch(occurrences[start:start + FIRE_BATCH])
        for job in mine:
            if not job.id.startswith(sync.OCCURRENCE_PREFIX):
                self.get_queue_for_job(job).enqueue_job(job)
        return fired

    @staticmethod
    def fire_batch(occurrences) -> list:
        try:
            return dispatch.fire_occurrences(occurrences)
        except Exception:
            log.exception("firing %s occurrences together failed; firing each on its own", len(occurrences))
            db.session.rollback()
        fired = []
        for occurrence in occurrences:  # one failing (a database error, a bad job) spares the others
            try:
                fired.append(dispatch.fire_occurrence(*occurrence))
            except Exception:
                log.exception("firing occurrence failed job=%s at=%s", *occurrence)
                db.session.rollback()
        return fired


class Housekeeper:
    """Reaper, resync, system jobs and the mail sweep, each at its own period, with its own app
    context (and so its own database session). One scheduler process at a time does it (a Redis
    lock with an owner), and each step on its own: one failing (Redis away, a bad job) never
    skips the others."""

    TICK = 0.5  # seconds between looks at what is due

    def __init__(self, app, connection):
        self.app, self.connection = app, connection
        self.reaper = Reaper()
        self.token = None  # the lock's owner: one of its own for each housekeeping process
        self._next_resync = 0.0
        self._next_reap = 0.0

    def loop(self, stop: threading.Event, parent_pid: int | None = None):
        """Pass after pass until stop is set, or the parent process is gone."""
        while not stop.is_set() and (parent_pid is None or os.getppid() == parent_pid):
            try:
                self.pass_once()
            except Exception:  # whatever it is, housekeeping goes on at the next tick
                log.exception("housekeeping pass failed")
            stop.wait(self.TICK)

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
            if not lock.acquire(blocking=False, token=self.token):
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


class HousekeepingProcess:
    """The housekeeper in a child process, forked from the scheduler (which has no other thread
    then) so that it shares the app and its configuration. The firing loop looks at it after
    every pass and starts another if it died; it ends when the scheduler stops it (SIGTERM, then
    SIGKILL after a grace) and by itself within a tick if the scheduler dies."""

    RESTART_SECONDS = 5.0  # at most one restart this often: a child that dies at once is not a busy loop
    STOP_GRACE = 10.0

    def __init__(self, housekeeper: Housekeeper):
        self.housekeeper = housekeeper
        self.process = None
        self.token = None
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self):
        self._started_at = time.monotonic()
        self.token = uuid.uuid4().hex
        process = multiprocessing.get_context("fork").Process(
            target=_keep_house, args=(self.housekeeper, self.token, os.getpid()), name="firetime-housekeeping")
        process.start()
        self.process = process
        log.info("housekeeping process started pid=%s", process.pid)

    def _release_lock(self):
        """The housekeeping lock, if the ended child held it: the next one need not wait for it to
        expire (up to two resync periods)."""
        try:
            self.housekeeper.connection.lock(HOUSEKEEPING_LOCK).do_release(self.token)
            log.info("released the housekeeping lock its process held")
        except LockNotOwnedError:
            pass
        except RedisError as exc:
            log.warning("could not release the housekeeping lock (%s); it expires by itself", exc)

    def keep_alive(self):
        """Start another child if the last one died (not more often than RESTART_SECONDS)."""
        if self.process is None or self.process.is_alive():
            return
        if time.monotonic() - self._started_at < self.RESTART_SECONDS:
            return
        log.warning("housekeeping process pid=%s ended (exit code %s); starting another",
                    self.process.pid, self.process.exitcode)
        self.process.close()
        self._release_lock()
        self.start()

    def stop(self):
        process, self.process = self.process, None
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(self.STOP_GRACE)
        if process.is_alive():
            log.warning("housekeeping process pid=%s did not stop in %s s; killing it", process.pid, self.STOP_GRACE)
            process.kill()
            process.join(5)
        self._release_lock()


def _keep_house(housekeeper: Housekeeper, token: str, parent_pid: int):
    """The child's body: its own database connections (the parent's are the parent's), SIGTERM
    ends it after the current step, Ctrl-C is the parent's to handle. It yields the processor to
    the firing loop (a lower priority): a pass may wait, a fire should not."""
    from webapp.extensions import db

    os.nice(HOUSEKEEPING_NICENESS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with housekeeper.app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)  # the pooled connections were the parent's
    housekeeper.token = token
    housekeeper.loop(stop, parent_pid)


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
