"""Races found in review: each test sets up the interleaving and asserts the invariant."""
from datetime import timedelta

from sqlalchemy import create_engine, func, select, text

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from tests.integration.test_engine import final
from webapp.execution import dispatch, lifecycle
from webapp.execution.recovery import Reaper
from webapp.execution.worker import FiretimeWorker
from webapp.extensions import db, redis_client
from webapp.jobs import editing
from webapp.jobtypes.registry import queue_names
from webapp.models import Job, Run, RunStatus
from webapp.models.types import utcnow
from webapp.scheduling import sync
from webapp.scheduling.service import FiretimeScheduler


def scheduled():
    return {m.decode(): s for m, s in
            redis_client.conn.zrange(sync.scheduler().scheduled_jobs_key, 0, -1, withscores=True)}


def test_cancel_from_a_page_loaded_while_queued_does_not_end_a_started_run(ctx, start_process):
    job = make_job(params={"duration": 3, "lines_per_second": 5})
    first, second = dispatch.request_run(job), dispatch.request_run(job)
    first_id, second_id = first.id, second.id
    stale = db.session.get(Run, first_id)  # what the cancel view loaded: still queued
    other = create_engine(str(db.engine.url))  # reads without touching the session's objects

    def status(run_id):
        with other.connect() as connection:
            return connection.execute(text("SELECT status FROM runs WHERE id = :i"), {"i": run_id}).scalar()

    start_process(), start_process()
    wait_for(lambda: status(first_id) == "in_progress", 30, message="first run in progress")
    assert dispatch.cancel_run(stale) == "stopping"  # not "cancelled before it started"
    first = final(first_id)
    assert first.status == RunStatus.CANCELLED and first.line_count > 0  # told, stopped, log kept
    second = final(second_id)
    assert second.started_at >= first.finished_at  # never two in progress
    other.dispose()


def test_a_skipped_occurrence_brought_back_by_a_restore_does_not_stall_the_plan(ctx):
    user = make_user()
    job = make_job(plan={"kind": "cron", "expression": "0 * * * *"})
    sync.reschedule(job)
    skipped = job.next_fire_at
    dispatch.skip_next_occurrence(job, user)
    editing.remove_job(user, job)
    editing.restore_job(user, job)
    assert db.session.get(Job, job.id).next_fire_at == skipped  # the plan points at it again
    assert dispatch.fire_occurrence(job.id, skipped.isoformat()) is None  # fired once already
    job = db.session.get(Job, job.id)
    assert job.next_fire_at == skipped + timedelta(hours=1)
    assert scheduled()[sync.occurrence_id(job.id)] == job.next_fire_at.timestamp()


def test_a_plan_saved_during_a_scheduler_pass_keeps_its_new_occurrence(ctx, app):
    user = make_user()
    job = make_job(plan={"kind": "cron", "expression": "*/5 * * * *"})
    job.next_fire_at = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    db.session.commit()
    sync.place(job)
    scheduler = FiretimeScheduler(app, connection=redis_client.conn)
    due = scheduler.get_jobs_to_queue

    def due_then_edit(*args, **kwargs):
        entries = list(due(*args, **kwargs))
        # Meanwhile an administrator saves a new plan, in the web process.
        current = db.session.get(Job, job.id)
        editing.update_job(user, current, editing.JobInput(
            name=current.name, job_type=current.job_type, scope="installation", params=dict(current.params),
            plan={"kind": "interval", "every": "1", "unit": "hours"}))
        return entries

    scheduler.get_jobs_to_queue = due_then_edit
    scheduler.fire_due()
    job = db.session.get(Job, job.id)
    assert scheduled() == {sync.occurrence_id(job.id): job.next_fire_at.timestamp()}


def test_a_database_error_while_the_worker_claims_does_not_lose_the_run(ctx, monkeypatch):
    job = make_job(params={"duration": 0, "lines_per_second": 0})
    run_id = dispatch.request_run(job).id
    real_claim = lifecycle.claim
    calls = []

    def claim_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE runs", {}, Exception("server closed the connection unexpectedly"))
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "claim", claim_failing_once)
    FiretimeWorker(queue_names(), connection=redis_client.conn).work(burst=True)
    monkeypatch.undo()
    run = db.session.get(Run, run_id, populate_existing=True)
    assert run.status == RunStatus.SUCCEEDED  # the horse claimed it itself


def test_runs_rq_gave_up_on_are_handed_over_again(ctx):
    from rq.job import Job as RQJob

    job = make_job(params={"duration": 0, "lines_per_second": 0})
    run = dispatch.request_run(job)
    run_id, rq_job_id = run.id, run.rq_job_id
    RQJob.fetch(rq_job_id, connection=redis_client.conn).set_status("failed")  # lost in a crash
    run.enqueued_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert Reaper().run_once()["requeued"] == 1
    FiretimeWorker(queue_names(), connection=redis_client.conn).work(burst=True)
    assert db.session.get(Run, run_id, populate_existing=True).status == RunStatus.SUCCEEDED


def test_system_jobs_whose_name_is_taken_do_not_stop_the_scheduler(ctx):
    make_job(name="Purge run history")  # an administrator's job got there first
    created = sync.ensure_system_jobs()
    assert [job.name for job in created] == ["Delete orphaned export files", "Activity report"]
    assert db.session.scalar(select(func.count(Job.id)).where(Job.system.is_(True))) == 2
