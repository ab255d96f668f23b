"""The scheduler's housekeeping runs in a child process: restarted when it dies, ended with the
scheduler, and never in the way of a fire."""
import os
import re
import signal
from datetime import timedelta

from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import make_job
from webapp.extensions import db, redis_client
from webapp.models import Run, Trigger
from webapp.models.types import utcnow
from webapp.scheduling import sync
from webapp.scheduling.service import HOUSEKEEPING_LOCK


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def housekeeping_child(process):
    """The housekeeping process the scheduler last said it started, once it runs as its child."""
    started = re.findall(r"housekeeping process started pid=(\d+)", process.output())
    pid = int(started[-1]) if started else None
    return pid if pid in process.children() and alive(pid) else None


def freeze_holding_the_lock(pid, attempts=200):
    conn = redis_client.conn
    for _ in range(attempts):
        wait_for(lambda: conn.exists(HOUSEKEEPING_LOCK), 10, interval=0.001, message="a housekeeping pass")
        os.kill(pid, signal.SIGSTOP)
        if conn.exists(HOUSEKEEPING_LOCK):
            return
        os.kill(pid, signal.SIGCONT)  # between two passes: again
    raise AssertionError("never caught the housekeeping process in a pass")


def planned_runs(job_id):
    runs = db.session.scalars(select(Run).where(Run.job_id == job_id, Run.trigger == Trigger.PLAN)).all()
    db.session.commit()
    return runs


def test_a_dead_housekeeping_process_is_replaced_and_the_new_one_keeps_house(ctx, start_process):
    scheduler = start_process("scheduler")
    first = wait_for(lambda: housekeeping_child(scheduler), 20, message="the housekeeping process")
    assert first != scheduler.proc.pid
    # Frozen in the middle of a pass, holding the housekeeping lock, it keeps house no more: a
    # plan whose occurrence Redis lost waits for a resync.
    freeze_holding_the_lock(first)
    job = make_job(plan={"kind": "interval", "every": 1, "unit": "hours",
                         "anchor": (utcnow() - timedelta(minutes=30)).replace(microsecond=0).isoformat()})
    job.next_fire_at = due = utcnow().replace(microsecond=0) + timedelta(seconds=2)
    db.session.commit()  # in the database, never placed in Redis
    assert sync.occurrence_id(job.id) not in {m.decode() for m in redis_client.conn.zrange(
        sync.scheduler().scheduled_jobs_key, 0, -1)}
    os.kill(first, signal.SIGKILL)

    second = wait_for(lambda: (pid := housekeeping_child(scheduler)) != first and pid, 20,
                      message="a new housekeeping process")
    assert alive(second) and not alive(first)
    # The new one resyncs at once, without waiting a minute for the dead one's lock to expire:
    # the occurrence is placed and fires, on time or a little late.
    runs = wait_for(lambda: planned_runs(job.id), 20, message="the lost occurrence fired")
    assert runs[0].occurrence_at == due
    scheduler.stop()
    log = scheduler.output()
    assert f"housekeeping process pid={first} ended (exit code -9); starting another" in log
    assert "released the housekeeping lock its process held" in log
    assert "Traceback" not in log


def test_stopping_the_scheduler_ends_its_housekeeping_process(ctx, start_process):
    scheduler = start_process("scheduler")
    child = wait_for(lambda: housekeeping_child(scheduler), 20, message="the housekeeping process")
    scheduler.proc.send_signal(signal.SIGTERM)
    assert scheduler.proc.wait(15) == 0
    wait_for(lambda: not alive(child), 5, message="the housekeeping process to end")
    assert "Traceback" not in scheduler.output()


def test_a_scheduler_killed_outright_leaves_no_housekeeping_behind(ctx, start_process):
    scheduler = start_process("scheduler")
    child = wait_for(lambda: housekeeping_child(scheduler), 20, message="the housekeeping process")
    assert alive(child)
    os.kill(scheduler.proc.pid, signal.SIGKILL)  # no chance to stop its child
    assert scheduler.proc.wait(10) == -signal.SIGKILL
    # wait_for fails the test if the orphan is still running after 10 s.
    ended = wait_for(lambda: not alive(child), 10, message="the orphaned housekeeping process to end by itself")
    assert ended and not alive(child)
