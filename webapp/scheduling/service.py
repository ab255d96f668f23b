"""The scheduler process: rq-scheduler's loop, with occurrences fired inline (so a planned
fire never waits for a free worker) and housekeeping in the same pass. Only the process
holding rq-scheduler's lock does a pass; the database claim makes a double fire harmless."""
import logging
import time
from operator import call

from rq_scheduler import Scheduler

from webapp.execution import dispatch
from webapp.execution.isolation import each
from webapp.execution.recovery import Reaper
from webapp.extensions import db
from webapp.scheduling import sync

log = logging.getLogger(__name__)
LAST_PASS_KEY = "firetime:scheduler:last_pass"


class FiretimeScheduler(Scheduler):
    def __init__(self, app, **kwargs):
        super().__init__(queue_name=sync.OCCURRENCE_QUEUE, interval=app.config["SCHEDULER_INTERVAL"], **kwargs)
        self.app = app
        self.reaper = Reaper()
        self._next_resync = 0.0
        self._next_reap = 0.0

    def enqueue_jobs(self):
        with self.app.app_context():
            try:
                fired = self.fire_due()
                self.housekeeping()
                self.connection.set(LAST_PASS_KEY, time.time(), ex=120)
                return fired
            except Exception:
                # One bad pass (database restarting, say) must not end the scheduler.
                log.exception("scheduler pass failed")
                db.session.rollback()
                return []
            finally:
                db.session.remove()

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

    def housekeeping(self):
        """Each step on its own: one failing (Redis away, a bad job) never skips the others."""
        now = time.monotonic()
        steps = []
        if now >= self._next_resync:
            self._next_resync = now + self.app.config["RESYNC_SECONDS"]
            steps += [sync.ensure_system_jobs, sync.resync]
        if now >= self._next_reap:
            self._next_reap = now + self.app.config["REAP_SECONDS"]
            steps.append(self.reaper.run_once)
        each(steps, call, "housekeeping step")


def run_scheduler(app, connection, burst=False):
    """Run until stopped; if Redis goes away, wait for it and carry on. System jobs are created
    by the first pass's housekeeping."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    while True:
        try:
            FiretimeScheduler(app, connection=connection).run(burst=burst)
            return
        except (RedisConnectionError, RedisTimeoutError):
            log.warning("scheduler lost Redis; retrying in 2 s")
            time.sleep(2)
