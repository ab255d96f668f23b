"""Job.last_run_id and Job.last_status follow each job's latest run that did something (the jobs
list filters and sorts by them): through every way a run is written, they equal what the runs
table says."""
from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from webapp.execution import dispatch, lifecycle
from webapp.extensions import db
from webapp.models import Job, Run, RunStatus, Trigger
from webapp.scheduling import sync


def from_runs(job_id):
    """The job's latest run that did something, read from the runs table."""
    run = db.session.scalar(select(Run).where(Run.job_id == job_id, Run.status != RunStatus.SKIPPED)
                            .order_by(Run.id.desc()).limit(1))
    return (run.id, run.status) if run else (None, None)


def kept(job_id):
    db.session.expire_all()
    job = db.session.get(Job, job_id)
    return job.last_run_id, job.last_status


def assert_kept(*jobs):
    for job in jobs:
        assert kept(job.id) == from_runs(job.id), job.name


def test_runs_asked_for_planned_skipped_and_written_by_hand_keep_it(ctx):
    user = make_user()
    a, b, planned = make_job(name="A"), make_job(name="B"), make_job(name="P", plan={"kind": "cron", "expression": "0 * * * *"})
    assert kept(a.id) == (None, None)

    first = dispatch.request_run(a, trigger=Trigger.HAND, user=user)
    assert kept(a.id) == (first.id, RunStatus.QUEUED)
    waiting = dispatch.request_run(db.session.get(Job, a.id), trigger=Trigger.API, user=user)  # behind the first
    assert kept(a.id) == (waiting.id, RunStatus.QUEUED)

    started, _ = dispatch.request_runs([db.session.get(Job, b.id)], trigger=Trigger.HAND, user=user)
    assert kept(b.id) == (started[0], RunStatus.QUEUED)

    # A claim and an end through the lifecycle's own statements.
    assert lifecycle.claim(started[0], "test-worker", live=False) is not None
    assert kept(b.id) == (started[0], RunStatus.IN_PROGRESS)
    assert lifecycle.finish_run(started[0], RunStatus.FAILED, "boom")
    assert kept(b.id) == (started[0], RunStatus.FAILED)

    # Cancelling the waiting run of A: A's latest is that run, now cancelled; the first run's
    # end then does not change it (it is no longer the latest).
    assert dispatch.cancel_run(db.session.get(Run, waiting.id), user) == "cancelled"
    assert kept(a.id) == (waiting.id, RunStatus.CANCELLED)
    lifecycle.claim(first.id, "test-worker", live=False)
    lifecycle.finish_run(first.id, RunStatus.SUCCEEDED)
    assert kept(a.id) == (waiting.id, RunStatus.CANCELLED)

    # A skipped occurrence is never the latest.
    sync.reschedule(db.session.get(Job, planned.id))
    assert dispatch.skip_next_occurrence(db.session.get(Job, planned.id), user).status == RunStatus.SKIPPED
    assert kept(planned.id) == (None, None)
    # A planned fire is.
    job = db.session.get(Job, planned.id)
    fired = dispatch.fire_occurrence(job.id, job.next_fire_at.isoformat())
    assert kept(planned.id) == (fired.id, RunStatus.QUEUED)

    # A run written through the ORM (a test, the demo data), then changed there.
    row = Run(job_id=planned.id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED)
    db.session.add(row)
    db.session.commit()
    assert kept(planned.id) == (row.id, RunStatus.SUCCEEDED)
    row = db.session.get(Run, row.id)
    row.status = RunStatus.WARNINGS
    db.session.commit()
    assert kept(planned.id) == (row.id, RunStatus.WARNINGS)
    assert_kept(a, b, planned)


def test_a_real_worker_keeps_it_through_a_run(ctx, worker):
    job = make_job(name="Worked")
    run = dispatch.request_run(job, trigger=Trigger.HAND, user=make_user())
    wait_for(lambda: kept(job.id)[1] == RunStatus.SUCCEEDED, 30, message="run succeeded on the job")
    assert kept(job.id) == (run.id, RunStatus.SUCCEEDED)
    assert_kept(job)
