"""Every run reaches a final status: killed workers, cancels, lost queue entries."""
import os
import signal

from rq.job import Job as RQJob
from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import make_job
from tests.integration.test_engine import final
from webapp.execution import dispatch
from webapp.extensions import db, redis_client
from webapp.models import Run, RunLogLine, RunStatus


def in_progress(run_id, timeout=20):
    def started():
        db.session.expire_all()
        return db.session.get(Run, run_id).status == RunStatus.IN_PROGRESS

    wait_for(started, timeout, message=f"run {run_id} to start")
    return db.session.get(Run, run_id)


def test_worker_killed_mid_run_fails_the_run_and_the_job_runs_again(ctx, worker, start_process):
    job = make_job(params={"duration": 60, "lines_per_second": 5})
    run = dispatch.request_run(job)
    in_progress(run.id)
    wait_for(lambda: db.session.execute(select(Run.id)).first() and
             redis_client.conn.xlen(f"firetime:run:{run.id}:log") >= 3, message="a few log lines")
    worker.kill(signal.SIGKILL)  # worker and work horse at once, as when the machine is lost
    scheduler = start_process("scheduler")  # its housekeeping notices the silence
    try:
        run = final(run.id, timeout=30)
    except AssertionError as exc:
        scheduler.stop()
        raise AssertionError(scheduler.output()[-3000:]) from exc
    assert run.status == RunStatus.FAILED
    assert "stopped answering" in run.message
    kept = db.session.scalar(select(RunLogLine.message).where(RunLogLine.run_id == run.id)
                             .order_by(RunLogLine.seq))
    assert kept.startswith("Self-test started")  # the log that reached Redis is kept

    job.params = {"duration": 0, "lines_per_second": 0}
    db.session.commit()
    start_process()  # a new worker
    again = final(dispatch.request_run(job).id)
    assert again.status == RunStatus.SUCCEEDED


def test_work_horse_killed_is_failed_at_once_by_its_worker(ctx, worker):
    job = make_job(params={"duration": 60, "lines_per_second": 2})
    run = in_progress(dispatch.request_run(job).id)
    os.kill(worker.children()[0], signal.SIGKILL)
    run = final(run.id, timeout=10)
    assert run.status == RunStatus.FAILED
    assert run.message == "The worker process running this job ended unexpectedly (signal 9)."


def test_cancel_a_waiting_run_removes_it_and_the_next_one_starts(ctx, worker):
    job = make_job(params={"duration": 1.5, "lines_per_second": 2})
    first = dispatch.request_run(job)
    second = dispatch.request_run(job)
    third = dispatch.request_run(job)
    assert dispatch.cancel_run(second) == "cancelled"
    assert db.session.get(Run, second.id).status == RunStatus.CANCELLED
    assert final(first.id).status == RunStatus.SUCCEEDED
    third = final(third.id)
    assert third.status == RunStatus.SUCCEEDED
    second = db.session.get(Run, second.id)
    assert second.status == RunStatus.CANCELLED and second.started_at is None


def test_cancel_a_run_waiting_in_rq_means_no_worker_runs_it(ctx, start_process):
    job = make_job(params={"duration": 0, "lines_per_second": 0})
    run = dispatch.request_run(job)
    assert run.enqueued_at is not None  # handed to RQ, no worker yet
    assert dispatch.cancel_run(run) == "cancelled"
    assert RQJob.fetch(run.rq_job_id, connection=redis_client.conn).get_status() == "canceled"
    start_process()
    later = final(dispatch.request_run(job).id)  # the job is free again
    assert later.status == RunStatus.SUCCEEDED
    run = db.session.get(Run, run.id)
    assert run.status == RunStatus.CANCELLED and run.started_at is None


def test_cancel_a_running_run_tells_the_job_code(ctx, worker):
    job = make_job(params={"duration": 60, "lines_per_second": 5})
    run = in_progress(dispatch.request_run(job).id)
    assert dispatch.cancel_run(run) == "stopping"
    run = final(run.id, timeout=10)
    assert run.status == RunStatus.CANCELLED
    assert run.message == "Cancelled on request."
    assert run.finished_at - run.cancel_requested_at < __import__("datetime").timedelta(seconds=3)


def test_cancel_a_run_that_ignores_it_stops_it_after_the_grace(ctx, worker, start_process):
    job = make_job(job_type="tests.stubborn", params={"seconds": 60})
    run = in_progress(dispatch.request_run(job).id)
    dispatch.cancel_run(run)
    start_process("scheduler")
    run = final(run.id, timeout=20)
    assert run.status == RunStatus.CANCELLED
    assert "did not stop in time" in run.message
    assert run.line_count == 1  # the log up to the stop is kept


def test_runs_lost_from_redis_are_handed_to_rq_again(ctx, start_process):
    from webapp.execution.recovery import Reaper
    from webapp.models.types import utcnow
    from datetime import timedelta

    job = make_job(params={"duration": 0, "lines_per_second": 0})
    run = dispatch.request_run(job)
    redis_client.conn.flushall()  # Redis restarted empty before a worker took the run
    run.enqueued_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert Reaper().run_once()["requeued"] == 1
    start_process()
    assert final(run.id).status == RunStatus.SUCCEEDED


def test_housekeeping_locks_only_jobs_whose_waiting_run_is_stalled(ctx):
    from webapp.execution.recovery import Reaper
    from webapp.models import Job
    from webapp.models.types import utcnow

    busy, stalled = make_job(), make_job()
    now = utcnow()
    db.session.add_all([
        Run(job_id=busy.id, trigger="hand", status=RunStatus.IN_PROGRESS, started_at=now, enqueued_at=now),
        Run(job_id=busy.id, trigger="hand"),  # waits behind it, as it should
        Run(job_id=stalled.id, trigger="hand"),  # waits behind nothing: a release was lost
    ])
    db.session.commit()
    seq_before = {job.id: job.dispatch_seq for job in (busy, stalled)}
    assert Reaper()._release_stalled(now) == 1
    db.session.expire_all()
    assert db.session.get(Job, busy.id).dispatch_seq == seq_before[busy.id]  # never locked
    assert db.session.get(Job, stalled.id).dispatch_seq > seq_before[stalled.id]
    waiting = db.session.scalars(select(Run).where(Run.enqueued_at.is_(None))).all()
    assert [run.job_id for run in waiting] == [busy.id]
    released = db.session.scalar(select(Run).where(Run.job_id == stalled.id))
    assert RQJob.exists(released.rq_job_id, connection=redis_client.conn)


def test_every_housekeeping_query_on_runs_uses_an_index(ctx):
    """With a million finished runs, a pass must not read them all: no statement of a reaper
    pass or a resync scans the runs table. SQLite's plan is read as it is; PostgreSQL prefers a
    scan of a small table, so it is asked for its plan with sequential scans priced out: one
    is chosen then only where no index serves."""
    from sqlalchemy import event

    from webapp.execution.recovery import Reaper
    from webapp.scheduling import sync

    make_job(plan={"kind": "cron", "expression": "0 * * * *"})
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "runs" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        Reaper().run_once()
        sync.resync()
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert statements
    connection = db.session.connection()
    sqlite = db.engine.dialect.name == "sqlite"
    if not sqlite:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    for statement, parameters in statements:
        explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        details = [row[-1] if sqlite else row[0] for row in connection.exec_driver_sql(explain + statement,
                                                                                        parameters).all()]
        if sqlite:
            full_scans = [d for d in details if d.startswith("SCAN") and " runs" in d and "INDEX" not in d]
        else:
            full_scans = [d for d in details if "Seq Scan on runs" in d]
        assert not full_scans, (statement, details)
    db.session.rollback()
