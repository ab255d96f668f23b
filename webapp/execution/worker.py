"""RQ's forking worker, taught about Firetime runs: the worker claims a run and records its
end on its own warm connection, the horse only runs the job code, and a run is failed at once
when its work horse dies.

Redis is a cache here too. A Redis error never ends the worker: between runs it waits for
Redis and goes on; while a horse runs, RQ's bookkeeping is skipped until Redis answers, and
the outcome, which the horse leaves in a file, is recorded in the database all the same. The
worker holds a lease on the run its horse runs (livelog.watch): housekeeping asks the leasing
worker to stop a horse that went silent, and declares a run lost only once no worker holds its
lease. A worker cut off from Redis stops its horse before that lease can lapse unseen, so the
next run of the job never starts beside one still running."""
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

from flask import current_app
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import Worker
from rq.command import parse_payload
from rq.exceptions import DequeueTimeout, StopRequested
from rq.executions import Execution
from rq.suspension import WORKERS_SUSPENDED
from rq.worker import WorkerStatus

from webapp.execution import livelog, rqjobs
from webapp.extensions import db

log = logging.getLogger(__name__)
PAUSE_RECHECK = 1.0  # seconds: how old a worker's knowledge of the paused queues may be
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError)


def run_id_of(job) -> int | None:
    return rqjobs.run_id_of(job.id)


def _tolerant(method):
    """RQ bookkeeping that no run depends on: if Redis fails, note it and go on."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except RedisError as exc:
            self.redis_trouble(method.__name__, exc)
            return None
    return call


def _patient(method):
    """A step of the worker's loop that needs Redis (and starts nothing): wait until Redis
    answers, then take the step."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        while True:
            try:
                return method(self, *args, **kwargs)
            except REDIS_AWAY as exc:
                self.redis_trouble(method.__name__, exc)
                self.wait_for_redis()
    return call


class FiretimeWorker(Worker):
    def __init__(self, *args, heartbeat_seconds=None, lease_seconds=None, **kwargs):
        config = current_app.config
        heartbeat_seconds = heartbeat_seconds or config["HEARTBEAT_SECONDS"]
        kwargs.setdefault("job_monitoring_interval", heartbeat_seconds)
        super().__init__(*args, **kwargs)
        from webapp.execution import runner

        self.handoff = runner.Handoff(tempfile.mkdtemp(prefix="firetime-worker-"))  # the dir: mode 0700
        self.lease_seconds = lease_seconds or config["RUN_DEAD_AFTER"]
        self._lease_connection = None
        self.redis_lost = False
        self.running_job_id = None
        self.stop_asked = False  # a stop command came for the running horse
        self.horse_fate = None  # why the running horse ended without an outcome, when known
        self.live_start = None  # the run claimed here, whose live start goes with RQ's start record
        self.live_end = None  # (run id, status): the run whose end committed with that claim, the same
        self.lease_keeper = LeaseKeeper(self)
        # The database pool of every horse, made here once and never used by the worker: each
        # horse gets a pristine copy of it with the fork (engine.dispose(close=False) in each
        # horse made a new pool there, ~1 ms a run).
        self.horse_pool = db.engine.pool.recreate()
        self.claimed_at = 0.0  # monotonic: the claim, which set the run's lease with its live start
        self.pending_end = None  # the outcome of the last run, when its end waits for the next claim
        self.paused: set[str] = set()  # names of paused queues, as last read (open_queues)
        self.paused_read_at = float("-inf")
        self.idle_beat = heartbeat_seconds  # seconds between heartbeats while waiting for a job
        self.staged: dict = {}  # fields of the worker's RQ hash written with its next round trip
        self.beat_with_check = False  # the heartbeat RQ sends after a run goes with the suspension check

    # -- Redis comes and goes -------------------------------------------------------------
    def redis_trouble(self, step, exc):
        if not self.redis_lost:
            log.warning("worker %s: Redis failed in %s (%s); carrying on without it", self.name, step, exc)
        self.redis_lost = True

    def wait_for_redis(self):
        delay = 0.5
        while not self._stop_requested:
            try:
                self.rejoin()
                return
            except RedisError:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise StopRequested()

    def rejoin(self, known=None):
        """Register again if Redis came back empty, or was emptied (one HEXISTS, unless the
        caller asked it already: `known`): so that the worker is listed, and the stop commands
        for its run reach it."""
        if known is None:
            known = self.connection.hexists(self.key, "birth")
        if not known:
            self.connection.delete(self.key)  # a heartbeat may have left a partial hash
            self.register_birth()
            log.info("worker %s: registered again, Redis had lost it", self.name)
        if self.redis_lost:
            log.info("worker %s: Redis answers again", self.name)
            self.redis_lost = False

    run_maintenance_tasks = _tolerant(Worker.run_maintenance_tasks)
    # Called from the SIGTERM handler: a Redis error there would surface wherever the worker was.
    set_shutdown_requested_date = _tolerant(Worker.set_shutdown_requested_date)
    # In the horse: the run does not wait for RQ's records, its outcome goes to the database.
    prepare_job_execution = _tolerant(Worker.prepare_job_execution)
    handle_execution_ended = _tolerant(Worker.handle_execution_ended)
    handle_job_success = _tolerant(Worker.handle_job_success)
    handle_job_failure = _tolerant(Worker.handle_job_failure)
    teardown = _tolerant(Worker.teardown)

    # -- RQ's records between two runs, in one round trip ------------------------------------
    # After a run RQ writes, a round trip each: the horse's working time back to 0, the state
    # idle, a heartbeat; then, starting its next loop, a heartbeat with the check for `rq
    # suspend`. Here the first two wait for the worker's next round trip (`staged`), and the
    # heartbeat goes with the suspension check that follows at once: 3 round trips fewer a run.

    @_tolerant
    def set_state(self, state, pipeline=None):
        if pipeline is None and state == WorkerStatus.IDLE:
            self._state = state
            self.staged["state"] = state
            return None
        self.staged.pop("state", None)  # the newer state wins
        return super().set_state(state, pipeline)

    @_tolerant
    def set_current_job_working_time(self, current_job_working_time, pipeline=None):
        if pipeline is None and not current_job_working_time:  # the horse has ended
            self.current_job_working_time = 0
            self.staged["current_job_working_time"] = 0
            return None
        return super().set_current_job_working_time(current_job_working_time, pipeline)

    def send_staged(self, pipe):
        if self.staged:
            pipe.hset(self.key, mapping=self.staged)
            self.staged = {}

    @_tolerant
    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        if self.beat_with_check:
            self.beat_with_check = False
            return None
        # One round trip, not three (RQ sends HSET and EXPIRE one by one; then the HEXISTS of
        # rejoin).
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hexists(self.key, "birth")
            self.send_staged(pipe)
            super().heartbeat(timeout, pipe)
            known = pipe.execute()[0]
        self.rejoin(known)
        return None

    @_patient
    def check_for_suspension(self, burst):
        """RQ's check (a heartbeat and EXISTS of its suspension key) with the "still registered"
        check and what is staged, in one round trip; RQ's own check only while suspended."""
        self.beat_with_check = False
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hexists(self.key, "birth")
            self.send_staged(pipe)
            super().heartbeat(None, pipe)
            pipe.exists(WORKERS_SUSPENDED)
            replies = pipe.execute()
        self.rejoin(replies[0])
        if replies[-1]:
            super().check_for_suspension(burst)  # waits while suspended; a burst worker stops

    @_tolerant
    def prepare_execution(self, job):
        """RQ's record that the job started (executions.prepare_execution), with the live start
        of the run claimed for it and the live end of the run whose end committed with that
        claim (livelog.stage_started, stage_end), in the same round trip."""
        self.execution = None  # a failure here must not leave the previous run's record behind
        starting, ended = self.live_start, self.live_end
        self.live_start = self.live_end = None
        config = current_app.config
        with self.connection.pipeline() as pipe:
            self.send_staged(pipe)
            self.execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            if ended is not None:
                livelog.stage_end(pipe, *ended, config["LIVELOG_TTL"])
            if starting is not None:
                livelog.stage_started(pipe, starting, self.name, config["RUN_DEAD_AFTER"], config["LIVELOG_TTL"])
            refused = [r for r in pipe.execute(raise_on_error=False) if isinstance(r, Exception)]
        if refused:  # a key of the wrong type, say: the run's end and claim stand, the run goes on
            log.warning("live log start of run=%s or end of the one before refused by Redis (%s); running it anyway",
                        starting, refused[0])
        return self.execution

    # -- one run ----------------------------------------------------------------------------
    def work(self, *args, **kwargs):
        self.lease_keeper.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self.lease_keeper.stop()
            self.record_pending_end()
            self.handoff.close()

    def execute_job(self, job, queue):
        try:
            return self._execute_job(job, queue)
        finally:
            self.beat_with_check = True  # RQ's loop beats next; its suspension check beats too

    def _execute_job(self, job, queue):
        from webapp.execution import lifecycle, runner

        run_id = run_id_of(job)
        if run_id is None:
            self.record_pending_end()
            db.session.remove()
            return super().execute_job(job, queue)
        # Claim and record the end here, on the worker's warm connection; the horse only runs
        # the job code (see runner.preclaimed and runner.handoff). The end of the previous run,
        # if it waits, commits with this claim.
        pending, self.pending_end = self.pending_end, None
        try:
            ending = lifecycle.end_run(pending.run_id, pending.status, pending.message, ctx=pending) if pending else None
            claimed = runner.preclaimed[run_id] = lifecycle.claim(run_id, self.name, live=False, ending=ending,
                                                                           queue=queue.name)
            runner.handoff[run_id] = self.handoff
            self.live_start = run_id if claimed is not None else None
            self.live_end = (ending.ended.run_id, ending.ended.status) if ending is not None else None
        except Exception:  # database away for a moment: the horse claims and finishes by itself
            log.exception("claim in the worker failed run=%s; the work horse will try", run_id)
            db.session.rollback()
            claimed = None
            self.pending_end = pending
            self.record_pending_end()  # on its own (ended already, if the error came after the commit)
        db.session.remove()  # no connection in use at the fork: the horse gets a pool of its own
        self.handoff.expect(run_id)
        self.running_job_id, self.horse_fate, self.stop_asked = job.id, None, False
        self.claimed_at = time.monotonic()
        try:
            return super().execute_job(job, queue)
        finally:
            self.running_job_id, self.live_start, self.live_end = None, None, None
            runner.preclaimed.clear()
            runner.handoff.clear()
            self.record_end(run_id, claimed is not None)

    def record_end(self, run_id, claimed_here):
        """After the horse exited. An outcome it left waits in memory for the next claim, when
        one follows at once (see dequeue_job_and_maintain_ttl); any other end is recorded now."""
        from webapp.execution import lifecycle, runner

        try:
            if claimed_here:
                self.pending_end = self.handoff.take(run_id)
                if self.pending_end is None:
                    runner.collect(run_id, self.handoff, self.horse_fate or runner.NO_OUTCOME,
                                   stopped=self.stop_asked)
            elif self.stop_asked:
                lifecycle.end_stopped(run_id)
            elif self.horse_fate:
                lifecycle.fail_lost_run(run_id, self.horse_fate)
        except Exception:  # database away: the reaper fails the silent run, log kept
            log.exception("could not record the end of run=%s", run_id)
            db.session.rollback()
        finally:
            db.session.remove()

    def record_pending_end(self):
        """Record the end of the last run on its own: no run follows at once."""
        from webapp.execution import lifecycle

        pending, self.pending_end = self.pending_end, None
        if pending is None:
            return
        try:
            lifecycle.finish_run(pending.run_id, pending.status, pending.message, ctx=pending)
        except Exception:  # database away: the reaper fails the silent run, log kept
            log.exception("could not record the end of run=%s", pending.run_id)
            db.session.rollback()
        finally:
            db.session.remove()

    # -- paused queues -------------------------------------------------------------------------
    def open_queues(self) -> list:
        """The worker's queues that are not paused (QueueState, read at most once a
        PAUSE_RECHECK; if the database does not answer, the last answer stands)."""
        from webapp.models import QueueState

        now = time.monotonic()
        if now >= self.paused_read_at + PAUSE_RECHECK:
            try:
                self.paused = QueueState.paused_names()
                db.session.rollback()  # ends the read; nothing to commit
            except Exception as exc:
                db.session.rollback()
                log.warning("worker %s: could not read the paused queues (%s); as before: %s", self.name, exc,
                            sorted(self.paused))
            self.paused_read_at = now
        return [queue for queue in self._ordered_queues if queue.name not in self.paused]

    def _dequeue_open(self, timeout, max_idle_time=None):
        """RQ's wait for the next job, on the queues not paused only. While a queue is paused it
        looks again every PAUSE_RECHECK, so that a resume is heard at once; a queue paused while
        it waits is left at the next look (and a claim of a run from it is refused meanwhile)."""
        self.set_state(WorkerStatus.IDLE)
        idle_since = time.monotonic()
        while True:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            listening = self.open_queues()
            # Beat at least every HEARTBEAT_SECONDS while idle, so that a waiting worker is not
            # taken for a lost one (the queues page calls a worker silent for RUN_DEAD_AFTER lost).
            wait = timeout if timeout is None else min(timeout, self.idle_beat)
            if len(listening) < len(self._ordered_queues) and timeout is not None:
                wait = min(wait, PAUSE_RECHECK)
            if max_idle_time is not None:
                left = max_idle_time - (time.monotonic() - idle_since)
                if left <= 0:
                    return None
                if wait is not None:
                    wait = max(1.0, min(wait, left))
            if not listening:
                if timeout is None:
                    return None  # burst: nothing it may take
                self.procline("Every queue of this worker is paused")
                time.sleep(PAUSE_RECHECK)
                continue
            self.procline("Listening on " + ",".join(queue.name for queue in listening))
            try:
                result = self.queue_class.dequeue_any(listening, wait, connection=self.connection,
                                                      job_class=self.job_class, serializer=self.serializer,
                                                      death_penalty_class=self.death_penalty_class)
            except DequeueTimeout:
                continue
            if result is None:
                return None
            job, queue = result
            self.reorder_queues(reference_queue=queue)
            job.redis_server_version = self.get_redis_server_version()
            self.log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
            return result

    _dequeue_patiently = _patient(_dequeue_open)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if self.pending_end is not None:
            # The last run's end commits with the next run's claim if a run is ready now: one
            # commit between two runs, not two (on PostgreSQL each is a WAL flush). Only a run
            # ready at once, asked for once: the end never waits for the queue nor for Redis.
            ready = self.next_ready()
            if ready is not None and run_id_of(ready[0]) is not None:
                return ready
            self.record_pending_end()
            if ready is not None:
                return ready
        return self._dequeue_patiently(timeout, max_idle_time)

    def next_ready(self):
        """The next job if one is queued now (RQ's dequeue without its wait, retries and beats,
        which the worker's loop has just sent); None if none is, or Redis fails."""
        try:
            listening = self.open_queues()
            if not listening:
                return None
            ready = self.queue_class.dequeue_any(listening, None, connection=self.connection,
                                                 job_class=self.job_class, serializer=self.serializer,
                                                 death_penalty_class=self.death_penalty_class)
            if ready is not None:
                job, queue = ready
                self.reorder_queues(reference_queue=queue)
                job.redis_server_version = self.get_redis_server_version()
                self.log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
            return ready
        except RedisError as exc:
            self.redis_trouble("next_ready", exc)
            return None

    def monitor_work_horse(self, job, queue):
        run_id = run_id_of(job)
        if run_id is not None:
            self.lease_keeper.keep(run_id, self.horse_pid, self.claimed_at)
        try:
            super().monitor_work_horse(job, queue)
        except RedisError as exc:
            # Every Redis call while the horse runs is tolerant, so the horse has ended: only
            # RQ's record of how is missing. The outcome file tells the rest.
            self.redis_trouble("monitor_work_horse", exc)
        finally:
            self.lease_keeper.release()

    def maintain_heartbeats(self, job):
        try:
            self.rejoin()
            if self.execution is not None:  # None if Redis failed as the run began
                super().maintain_heartbeats(job)
        except RedisError as exc:
            self.redis_trouble("maintain_heartbeats", exc)

    @property
    def lease_connection(self):
        """A client of its own for the lease, failing fast: a Redis that hangs (a network cut
        that drops packets) must not hold the lease keeper past its deadline."""
        if self._lease_connection is None:
            pool = self.connection.connection_pool
            timeout = self.job_monitoring_interval
            kwargs = {**pool.connection_kwargs, "socket_timeout": timeout, "socket_connect_timeout": timeout,
                      "retry": Retry(NoBackoff(), 0)}
            self._lease_connection = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class,
                                                                          **kwargs))
        return self._lease_connection

    def fence(self, run_id, horse_pid, silent):
        """The lease could not be renewed for so long that housekeeping may soon declare the run
        lost and start the next run of its job: stop the horse before that."""
        log.error("worker %s: lease of run=%s not renewed for %.0f s; stopping its work horse", self.name,
                  run_id, silent)
        self.horse_fate = (f"The worker running this job could not reach Redis for {silent:.0f} s, so it stopped "
                           "the run: it would have been declared lost and the job's next run started beside it.")
        # The horse leads a process group of its own (RQ). Not kill_horse(): once the horse is
        # reaped, horse_pid is 0 and that would take the worker's own group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(horse_pid, signal.SIGKILL)

    def handle_payload(self, message):
        payload = parse_payload(message)
        if payload.get("command") == "stop-job" and payload.get("job_id") == self.running_job_id:
            self.stop_asked = True  # set before the kill: the run ends as stopped, not as lost
        super().handle_payload(message)

    def get_current_job_id(self, pipeline=None):
        # Known here while a horse runs, even when Redis was emptied meanwhile: a stop command
        # for the run must still reach its horse.
        return self.running_job_id or super().get_current_job_id(pipeline)

    def main_work_horse(self, job, queue):
        # The worker's pooled connections stay the worker's: dropped here, not closed.
        db.engine.pool = self.horse_pool
        return super().main_work_horse(job, queue)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if self.horse_fate or run_id_of(job) is None:
            return
        if ret_val is None:  # RQ killed it: it ran far past its time limit
            self.horse_fate = "The job ran past its time limit and its work horse was killed."
        else:
            how = f"signal {os.WTERMSIG(ret_val)}" if os.WIFSIGNALED(ret_val) else f"status {ret_val}"
            self.horse_fate = f"The worker process running this job ended unexpectedly ({how})."


class LeaseKeeper:
    """Renews the lease of the run the worker's horse runs, from a thread of the worker, once a
    monitoring interval: it goes on while the worker's main thread waits on the horse or on
    Redis. If the lease cannot be renewed in time (Redis away from this worker only, as far as
    it can tell), the worker stops the horse while the lease still holds.

    One thread for the worker's life, not one a run: a thread started just after a fork cost
    about as much as the fork on a busy host (19 ms at load 12), its memory freshly shared with
    the horse. Nor is it woken for each run: waking it right after the fork cost the run 0.8 ms
    on average (thread switches at load 3-4). Between runs it looks once an interval for a run to
    keep, so the first renewal of a run comes one to two intervals after its claim, well inside
    the lease (RUN_DEAD_AFTER, several intervals). When the worker forks it holds no run (a run
    is handed to it only after the fork, and a renewal holds the condition, which the end of the
    run waits for), so it is sending nothing to Redis, and the horse touches nothing of it: not
    its condition, not its Redis client. RQ's own pub/sub thread lives across the forks in the
    same way."""

    def __init__(self, worker: "FiretimeWorker"):
        self.worker = worker
        self.every = worker.job_monitoring_interval
        self.deadline = worker.lease_seconds - 1  # seconds after the last renewal: horse dead by then
        self.changed = threading.Condition()
        self.held = None  # [run id, horse pid, monotonic time of the last renewal] while a horse runs
        self.closing = False
        self.thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        with self.changed:
            self.closing = True
            self.changed.notify()
        self.thread.join(self.every + 1)

    def keep(self, run_id, horse_pid, renewed):
        """Keep the lease of run_id, last set at `renewed` (monotonic), while horse_pid runs it
        (seen by the thread at its next look, within an interval)."""
        with self.changed:
            self.held = Held(run_id, horse_pid, renewed, renewed + self.every)

    def release(self):
        """The horse has exited: no renewal from now on (waits for one under way)."""
        with self.changed:
            self.held = None

    def _keep(self):
        with self.changed:
            while not self.closing:
                if self.held is None:
                    self.changed.wait(self.every)
                    continue
                due = self.held.next_try - time.monotonic()
                if due > 0:
                    self.changed.wait(due)
                    continue
                self._renew(self.held)

    def _renew(self, held):
        silent = time.monotonic() - held.renewed
        if silent >= self.deadline:
            # This process was frozen (a paused host, Ctrl-Z) past its lease: the run may have
            # been declared lost and the job's next run started elsewhere. Renewing now would
            # let the old horse run on beside it.
            self._fence(held, silent)
            return
        try:
            livelog.watch(self.worker.lease_connection, held.run_id, self.worker.name, self.worker.lease_seconds)
            held.renewed = time.monotonic()
        except RedisError:
            silent = time.monotonic() - held.renewed
            # The next try ends up to two intervals from now (a wait, then a timeout).
            if silent + 2 * self.every >= self.deadline:
                self._fence(held, silent)
                return
        held.next_try = time.monotonic() + self.every

    def _fence(self, held, silent):
        self.held = None  # once
        self.worker.fence(held.run_id, held.horse_pid, silent)


@dataclass
class Held:
    """The lease LeaseKeeper keeps: whose, since when, and when it tries next."""

    run_id: int
    horse_pid: int
    renewed: float
    next_try: float


def warm_up():
    """Prepare once, in the worker, what every work horse would otherwise redo: a horse is a
    fork, so what the worker has loaded costs a run nothing (imports, SQLAlchemy's mapper
    configuration, the dialect's first-connect set-up)."""
    from sqlalchemy.orm import configure_mappers

    import webapp.execution.runner  # noqa: F401  (and with it lifecycle, context, livelog, notify)
    from webapp.jobtypes import registry

    registry.load_builtin()
    for job_type in registry.all_types():
        job_type.schema  # noqa: B018  (made once here, shared by every horse)
    configure_mappers()
    with db.engine.connect():
        pass
    # Objects made so far are never collected: the collector then leaves their memory pages
    # alone, and the horses do not copy them (copy-on-write) just to scan them.
    gc.freeze()


def run_worker(queues, connection, burst=False, with_scheduler=False):
    warm_up()
    # Named by host and process, never by an inherited RQ_WORKER_ID (that names a horse's worker).
    worker = FiretimeWorker(queues, connection=connection, name=f"{socket.gethostname()}.{os.getpid()}")
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
