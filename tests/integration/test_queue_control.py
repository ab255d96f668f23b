"""Pause, resume and clear per queue, pause on failure, and serial queues (S4), with real
workers: what an administrator who pauses a queue expects to see happen, and what must never
happen (a run lost, a run started twice, two runs of a serial queue at once)."""
import threading
import time

import pytest
import redis as redis_lib
from rq import Queue
from sqlalchemy import func, select, update

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from tests.integration.test_email import mail_env, smtp  # noqa: F401  (the SMTP server fixture)
from tests.jobtypes import SERIAL_QUEUE
from webapp.execution import dispatch, lifecycle, queues
from webapp.execution.rqjobs import run_job_id
from webapp.extensions import db, redis_client
from webapp.models import AuditEvent, Job, QueueState, Run, RunLogLine, RunStatus
from webapp.scheduling import sync

QUICK = {"duration": 0, "lines_per_second": 0}


def fresh(run_id) -> Run:
    db.session.expire_all()
    return db.session.get(Run, run_id)


def rq_ids(queue="default") -> list[str]:
    return Queue(queue, connection=redis_client.conn).get_job_ids()


def ended(run_id):
    run = fresh(run_id)
    return run if run.status not in (RunStatus.QUEUED, RunStatus.IN_PROGRESS) else None


def test_a_paused_queue_holds_new_runs_and_resume_hands_them_over_in_order(ctx):
    admin = make_user(username="queue-admin")
    assert queues.pause("default", admin, "Database upgrade tonight").changed
    row = queues.state("default")
    assert (row.paused_by_name, row.reason) == ("queue-admin", "Database upgrade tonight") and row.paused_at
    assert not queues.pause("default", admin).changed  # once

    runs = [dispatch.request_run(make_job()) for _ in range(3)]
    ids, _ = dispatch.request_runs([make_job() for _ in range(2)], user=admin)
    waiting = [run.id for run in runs] + ids
    assert all(fresh(run_id).enqueued_at is None for run_id in waiting)  # none handed to RQ
    assert rq_ids() == []

    outcome = queues.resume("default", admin)
    assert outcome.changed and outcome.count == 5
    assert rq_ids() == [run_job_id(run_id) for run_id in sorted(waiting)]  # in the order they were queued
    assert queues.state("default").paused_at is None
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "queue")
                                 .order_by(AuditEvent.id)).all()
    assert actions == ["pause", "resume"]


def test_a_claim_from_a_paused_queue_is_refused_and_the_run_waits_for_the_resume(ctx):
    run = dispatch.request_run(make_job())  # handed to RQ before the pause
    assert fresh(run.id).enqueued_at is not None
    queues.pause("default")
    assert lifecycle.claim(run.id, "host-a.1", live=False, queue="default") is None
    run = fresh(run.id)
    assert (run.status, run.enqueued_at, run.started_at) == (RunStatus.QUEUED, None, None)
    assert lifecycle.claim(run.id, "host-a.1", live=False, queue="system") is not None  # other queues go on


def test_planned_fires_during_a_pause_keep_one_waiting_run_a_job_and_record_the_others(ctx):
    job = make_job(plan={"kind": "cron", "expression": "*/5 * * * *"})
    sync.reschedule(job)
    queues.pause("default")
    first = dispatch.fire_occurrence(job.id, db.session.get(Job, job.id).next_fire_at.isoformat())
    second = dispatch.fire_occurrence(job.id, db.session.get(Job, job.id).next_fire_at.isoformat())
    assert (first.status, first.enqueued_at) == (RunStatus.QUEUED, None)
    assert second.status == RunStatus.SKIPPED
    assert second.message == f"Skipped: queue default is paused (run #{first.id} of this job waits for it)."
    queues.resume("default")
    assert fresh(first.id).enqueued_at is not None and rq_ids() == [run_job_id(first.id)]


def test_clear_cancels_every_waiting_run_of_the_queue_and_leaves_the_running_one(ctx):
    admin = make_user(username="clearing-admin")
    busy = make_job("Busy job")
    running = dispatch.request_run(busy)
    redis_client.conn.lpop(Queue("default", connection=redis_client.conn).key)  # as a worker takes it
    lifecycle.claim(running.id, "host-a.1", live=False, queue="default")
    behind = dispatch.request_run(busy)  # waits behind the running one, in the database
    other = dispatch.request_run(make_job("Other job"))  # handed to RQ
    system_run = dispatch.request_run(make_job("Report", job_type="system.activity_report", params={}))
    assert rq_ids() == [run_job_id(other.id)]

    outcome = queues.clear("default", admin)
    assert (outcome.changed, outcome.count) == (True, 2)
    for run_id in (behind.id, other.id):
        run = fresh(run_id)
        assert run.status == RunStatus.CANCELLED and run.started_at is None
        assert run.message == "Cancelled by clearing-admin before it started: queue default cleared."
    assert fresh(running.id).status == RunStatus.IN_PROGRESS
    assert fresh(system_run.id).status == RunStatus.QUEUED  # another queue
    assert rq_ids() == []
    assert db.session.scalar(select(Job.last_status).where(Job.name == "Other job")) == RunStatus.CANCELLED
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "clear"))
    assert (audit.object_name, audit.after, audit.actor_name) == ("default", {"cancelled": 2}, "clearing-admin")
    assert not queues.clear("default", admin).changed


def test_an_unknown_queue_is_refused_by_name(ctx):
    for action in (queues.pause, queues.resume, queues.clear):
        with pytest.raises(queues.UnknownQueue, match="no queue named 'nope'"):
            action("nope")
    assert db.session.scalar(select(func.count()).select_from(QueueState)) == 0


def test_pause_lets_the_running_run_finish_starts_nothing_new_and_outlives_a_worker_restart(ctx, worker,
                                                                                             start_process):
    running = dispatch.request_run(make_job(params={"duration": 2, "lines_per_second": 2}))
    wait_for(lambda: fresh(running.id).started_at, 15, message="the first run to start")
    queues.pause("default", reason="maintenance")
    waiting = dispatch.request_run(make_job())
    assert wait_for(lambda: ended(running.id), 15, message="the running run to finish").status == RunStatus.SUCCEEDED
    time.sleep(2)
    assert fresh(waiting.id).started_at is None

    worker.stop()  # a restart: the pause is in the database, not in the worker
    start_process()
    system_run = dispatch.request_run(make_job("Report", job_type="system.activity_report", params={}))
    wait_for(lambda: ended(system_run.id), 20, message="a run of another queue")
    assert fresh(waiting.id).started_at is None
    queues.resume("default")
    assert wait_for(lambda: ended(waiting.id), 15, message="the waiting run after resume").status == RunStatus.SUCCEEDED


def test_a_failed_run_pauses_its_queue_and_tells_the_superadmins(ctx, smtp, start_process, redis_server):  # noqa: F811
    from rq import Worker

    smtp.start()
    chief = make_user(username="chief")
    chief.email = "chief@example.org"
    db.session.commit()
    queues.set_pause_on_failure("default", True, make_user(username="setter"))
    start_process(env=mail_env(smtp.port))
    wait_for(lambda: Worker.all(connection=redis_lib.Redis.from_url(redis_server.url)), 30, message="worker")
    failing = dispatch.request_run(make_job("Nightly load", params={**QUICK, "fail_at_end": True}))
    assert wait_for(lambda: ended(failing.id), 20, message="the failing run").status == RunStatus.FAILED
    row = wait_for(lambda: db.session.get(QueueState, "default", populate_existing=True).paused_at and
                   db.session.get(QueueState, "default"), 10, message="the pause")
    assert row.paused_by_name == "system" and row.paused_run_id == failing.id
    assert row.reason.startswith(f"Run #{failing.id} of Nightly load failed: ")
    later = dispatch.request_run(make_job())
    [mail] = wait_for(lambda: smtp.inbox.to("chief@example.org"), 15, message="the superadmin's email")
    assert mail["Subject"] == f"[Firetime] Queue default paused: run #{failing.id} of Nightly load failed"
    assert "/queues/" in mail.get_body(("plain",)).get_content()
    assert fresh(later.id).started_at is None


def _times(run_id) -> tuple[float, float]:
    lines = db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run_id)
                               .order_by(RunLogLine.seq)).all()
    start = next(float(line.split()[1]) for line in lines if line.startswith("start "))
    end = next(float(line.split()[1]) for line in lines if line.startswith("end "))
    return start, end


def _two_workers(start_process, redis_server, queue):
    from rq import Worker

    conn = redis_lib.Redis.from_url(redis_server.url)
    processes = [start_process("--queues", queue) for _ in range(2)]
    wait_for(lambda: len(Worker.all(connection=conn)) == 2, 30, message="two workers")
    return processes


def test_a_serial_queue_runs_one_at_a_time_across_two_workers_in_queued_order(ctx, start_process, redis_server):
    jobs = [make_job(f"Step {n}", job_type="tests.serial_step", params={"seconds": 0.3}) for n in range(3)]
    queues.pause(SERIAL_QUEUE)  # both workers wait: then every run is there when they race
    _two_workers(start_process, redis_server, SERIAL_QUEUE)
    run_ids = [dispatch.request_run(job).id for _ in range(2) for job in jobs]  # two a job, interleaved
    queues.resume(SERIAL_QUEUE)
    for run_id in run_ids:
        assert wait_for(lambda: ended(run_id), 30, message=f"run {run_id}").status == RunStatus.SUCCEEDED
    spans = [_times(run_id) for run_id in run_ids]
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"two runs of the serial queue overlapped: {spans}"
    assert len({fresh(run_id).worker_name for run_id in run_ids}) == 2  # both workers took part


# --- races -------------------------------------------------------------------------------------

def test_clear_while_a_worker_takes_the_next_run_loses_none_and_runs_none_twice(ctx, worker):
    run_ids = [dispatch.request_run(make_job(params=QUICK)).id for _ in range(40)]
    wait_for(lambda: fresh(run_ids[0]).started_at, 15, message="the worker to begin")
    queues.clear("default")
    for run_id in run_ids:
        run = wait_for(lambda: ended(run_id), 20, message=f"run {run_id} to end")
        if run.status == RunStatus.CANCELLED:
            assert run.started_at is None and run.line_count == 0
        else:
            assert run.status == RunStatus.SUCCEEDED
    ran = [run_id for run_id in run_ids if fresh(run_id).status == RunStatus.SUCCEEDED]
    assert ran and len(ran) < len(run_ids)  # the clear came while the worker was taking them
    assert rq_ids() == []


def test_pause_while_fires_go_on_loses_no_occurrence_and_fires_none_twice(app, ctx):
    plan = {"kind": "cron", "expression": "*/5 * * * *"}
    jobs = [make_job(plan=plan) for _ in range(60)]
    for job in jobs:
        sync.reschedule(job)
    occurrences = [(job.id, job.next_fire_at.isoformat()) for job in jobs]
    errors = []

    def fire():
        with app.app_context():
            try:
                for start in range(0, len(occurrences), 5):
                    dispatch.fire_occurrences(occurrences[start:start + 5])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    firing = threading.Thread(target=fire)
    firing.start()
    queues.pause("default")
    firing.join(60)
    assert not errors
    runs = db.session.scalars(select(Run).where(Run.job_id.in_([job.id for job in jobs]))).all()
    assert sorted(run.job_id for run in runs) == sorted(job.id for job in jobs)  # each fired once
    handed = {run.id for run in runs if run.enqueued_at is not None}
    assert set(rq_ids()) == {run_job_id(run_id) for run_id in handed}
    queues.resume("default")
    assert sorted(rq_ids()) == sorted(run_job_id(run.id) for run in runs)  # each handed over once


def test_resume_while_two_workers_race_runs_each_waiting_run_once(ctx, start_process, redis_server):
    queues.pause("default")
    _two_workers(start_process, redis_server, "default")
    run_ids = [dispatch.request_run(make_job(params=QUICK)).id for _ in range(12)]
    time.sleep(1.5)
    assert all(fresh(run_id).started_at is None for run_id in run_ids)
    queues.resume("default")
    for run_id in run_ids:
        assert wait_for(lambda: ended(run_id), 30, message=f"run {run_id}").status == RunStatus.SUCCEEDED
    lines = db.session.execute(select(RunLogLine.run_id, func.count()).where(RunLogLine.run_id.in_(run_ids))
                               .group_by(RunLogLine.run_id)).all()
    assert len(lines) == len(run_ids) and len({count for _, count in lines}) == 1  # each ran once, alike


def test_housekeeping_leaves_a_paused_queue_alone_and_starts_a_serial_queue_in_order(ctx):
    from webapp.execution.recovery import Reaper

    queues.pause("default")
    held = dispatch.request_run(make_job())
    steps = [dispatch.request_run(make_job(job_type="tests.serial_step", params={})) for _ in range(3)]
    assert [fresh(run.id).enqueued_at is not None for run in steps] == [True, False, False]  # one slot
    db.session.execute(update(Run).where(Run.id == steps[0].id).values(enqueued_at=None))  # a hand-over lost
    db.session.commit()
    Reaper().run_once()
    assert fresh(held.id).enqueued_at is None  # the pause holds
    assert [fresh(run.id).enqueued_at is not None for run in steps] == [True, False, False]
    assert rq_ids(SERIAL_QUEUE).count(run_job_id(steps[0].id)) >= 1


def test_after_a_failure_that_pauses_the_queue_the_run_queued_behind_it_does_not_start(ctx):
    """The failed run's end and the pause commit together, and the worker claims the next run in
    that same transaction: the claim sees the pause."""
    from webapp.execution.worker import FiretimeWorker
    from webapp.jobtypes.registry import queue_names

    queues.set_pause_on_failure("default", True)
    failing = dispatch.request_run(make_job("Fails", params={**QUICK, "fail_at_end": True})).id
    behind = dispatch.request_run(make_job("Queued behind it", params=QUICK)).id
    assert rq_ids() == [run_job_id(failing), run_job_id(behind)]
    db.session.remove()
    FiretimeWorker(queue_names(), connection=redis_client.conn).work(burst=True)
    assert fresh(failing).status == RunStatus.FAILED
    waiting = fresh(behind)
    assert (waiting.status, waiting.started_at, waiting.enqueued_at) == (RunStatus.QUEUED, None, None)
    assert queues.state("default").paused_run_id == failing
    queues.resume("default")
    assert rq_ids() == [run_job_id(behind)]
