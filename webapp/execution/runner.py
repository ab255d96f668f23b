"""RQ's entry point, and only that: run the job code of a claimed run through a RunContext,
and leave how it ended for the worker (or record it, in a horse that claimed the run itself).
Claiming and recording the end are the lifecycle's."""
import logging
import mmap
import os
import pickle
import shutil
import struct
import traceback
from dataclasses import dataclass

from flask import current_app

from webapp.execution import lifecycle, livelog
from webapp.execution.context import RunCancelled, RunContext
from webapp.execution.lifecycle import Claimed
from webapp.execution.rqjobs import run_id_of
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import RunStatus

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How a run ended, as the work horse saw it (RunContext's attribute names)."""

    status: str
    message: str
    job_id: int
    percent: int
    progress_message: str
    warning_count: int
    error_count: int
    stats: dict
    lines: list
    files: list
    reports: bool  # the job sends report emails
    run_id: int = 0


class Handoff:
    """Where the work horses of one worker leave how their runs ended, for the worker to record:
    an area of memory the worker shares with them (made before its first fork), or a file in the
    worker's private directory for an outcome too large for the area. The area saves a file's
    creation, rename, reading and removal a run (0.4-0.6 ms on ext4)."""

    SIZE = 4 << 20  # bytes: room for the outcome of a run with some thousands of lines
    _HEADER = struct.Struct("<qq")  # run id, length of the pickled outcome after the header

    def __init__(self, directory: str):
        self.directory = directory  # private to the worker (mode 0700)
        self.area = mmap.mmap(-1, self.SIZE)  # shared (MAP_SHARED) with every process forked after this

    def expect(self, run_id: int):
        """In the worker, before the fork: what the area holds now belongs to no run."""
        self._HEADER.pack_into(self.area, 0, 0, 0)

    def leave(self, run_id: int, outcome: "Outcome"):
        """In the horse. The header goes last: the worker finds a whole outcome or none."""
        self.area.seek(self._HEADER.size)
        try:
            pickle.dump(outcome, self.area, protocol=pickle.HIGHEST_PROTOCOL)
        except ValueError:  # "data out of range": too large for the area
            path = self._path(run_id)
            with open(path + ".part", "wb") as handle:
                pickle.dump(outcome, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(path + ".part", path)  # the worker sees a whole outcome or none
            return
        self._HEADER.pack_into(self.area, 0, run_id, self.area.tell() - self._HEADER.size)

    def take(self, run_id: int) -> "Outcome | None":
        """In the worker, once the horse has exited: the outcome it left (then forgotten), or
        None if it left none."""
        left, length = self._HEADER.unpack_from(self.area, 0)
        if left == run_id and length:
            self.expect(0)
            start = self._HEADER.size
            return pickle.loads(self.area[start:start + length])  # left by our own horse
        path = self._path(run_id)
        try:
            with open(path, "rb") as handle:
                outcome = pickle.load(handle)  # written by our own horse, in the worker's private dir
        except FileNotFoundError:
            return None
        os.remove(path)
        return outcome

    def close(self):
        self.area.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _path(self, run_id: int) -> str:
        return os.path.join(self.directory, f"run-{run_id}.outcome")


# Set by FiretimeWorker just before it forks the work horse. The long-lived worker claims the
# run on its warm connection (preclaimed), and records the end from the outcome the horse leaves
# it (handoff): a fresh horse would pay for a new connection and cold caches (~15 ms).
preclaimed: dict[int, Claimed | None] = {}
handoff: dict[int, Handoff] = {}


def _origin() -> str | None:
    """The RQ queue the running job came from (None outside a worker)."""
    from rq import get_current_job

    job = get_current_job()
    return job.origin if job is not None else None


def execute(run_id: int):
    """Run one Firetime run inside an RQ work horse."""
    config = current_app.config
    if run_id in preclaimed:
        claimed = preclaimed.pop(run_id)
    else:  # the worker's claim failed (database away a moment): claim here, as the worker would
        claimed = lifecycle.claim(run_id, lifecycle.worker_label(), queue=_origin())
    if claimed is None:
        log.info("run not claimed (cancelled or already taken) run=%s", run_id)
        return
    ctx = RunContext(run_id=run_id, job_id=claimed.job_id, live=None, files_dir=config["FILES_DIR"],
                     args=claimed.args.split(), max_lines=config["LOG_MAX_LINES"],
                     max_line_chars=config["LOG_MAX_LINE_CHARS"], run_as=claimed.run_as)
    ctx.live = livelog.Publisher(redis_client.conn, run_id, ctx.lines, config["HEARTBEAT_SECONDS"],
                                 config["RUN_DEAD_AFTER"], ttl=config["LIVELOG_TTL"],
                                 max_lines=config["LOG_MAX_LINES"]).start()
    try:
        status, message = _call_job_type(ctx, claimed)
    finally:
        ctx.live.close()
    if status == RunStatus.SUCCEEDED and ctx.error_count:
        status, message = RunStatus.FAILED, ctx.first_error
    elif status == RunStatus.SUCCEEDED and ctx.warning_count:
        status = RunStatus.WARNINGS
    if ctx.dropped_lines:
        message = (message + " " if message else "") + f"({ctx.dropped_lines} log lines beyond the limit were not kept.)"
    outcome = Outcome(status, message, ctx.job_id, ctx.percent, ctx.progress_message, ctx.warning_count,
                      ctx.error_count, ctx.stats, ctx.lines, ctx.files, claimed.reports, run_id)
    if run_id in handoff:
        handoff[run_id].leave(run_id, outcome)
    else:
        lifecycle.finish_run(run_id, status, message, ctx=outcome)


def _call_job_type(ctx: RunContext, claimed: Claimed) -> tuple[str, str]:
    """Run the job code; how it ended, as (status, message)."""
    try:
        job_type = registry.get(claimed.job_type)
        ctx.params = job_type.params_for_run(claimed.params, claimed.args)
        job_type.run(ctx, **ctx.params)
        if ctx.cancelled():
            return RunStatus.CANCELLED, "Cancelled on request; the job stopped by itself."
        return RunStatus.SUCCEEDED, ""
    except RunCancelled as exc:  # on request, or job code that decided not to run (its reason)
        return RunStatus.CANCELLED, str(exc) or "Cancelled on request."
    except registry.UnknownJobType as exc:
        ctx.error(str(exc))
        return RunStatus.FAILED, str(exc)
    except Exception as exc:  # job code never hides a failure: the run fails with its message
        db.session.rollback()
        message = f"{type(exc).__name__}: {exc}"
        ctx.error(message)
        ctx.debug(traceback.format_exc())
        return RunStatus.FAILED, message


NO_OUTCOME = "The work horse ended without reporting how the run ended."


def collect(run_id: int, handoff_: Handoff, reason: str = NO_OUTCOME, stopped: bool = False) -> bool:
    """In the worker, once the horse has exited: record the end the horse left behind. A horse
    that left nothing was stopped on request, or died (killed, or failing to write): its run
    ends that way, with the reason the worker saw, unless it already ended another way."""
    outcome = handoff_.take(run_id)
    if outcome is None:
        if stopped:
            lifecycle.end_stopped(run_id)
        else:
            lifecycle.fail_lost_run(run_id, reason)
        return False
    return lifecycle.finish_run(run_id, outcome.status, outcome.message, ctx=outcome)


def on_stopped(job, connection, *args, **kwargs):
    """RQ's stop callback, named by RQ jobs enqueued by earlier versions; FiretimeWorker now
    records a stopped run itself (RQ skips the callback when Redis lost the job's hash)."""
    lifecycle.end_stopped(run_id_of(job.id))
