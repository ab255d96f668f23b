"""The engine end to end with a real worker process: runs, logs, failures, the overlap rule."""
from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Run, RunFile, RunLogLine, RunStatus, Trigger


def final(run_id, timeout=30):
    def done():
        db.session.expire_all()
        run = db.session.get(Run, run_id)
        return run if run.is_final else None

    return wait_for(done, timeout, message=f"run {run_id} to finish")


def test_run_succeeds_and_keeps_its_log(ctx, worker):
    job = make_job(params={"duration": 0.5, "lines_per_second": 10, "output_csv": True})
    run = dispatch.request_run(job, trigger=Trigger.HAND, user=make_user())
    run = final(run.id)
    assert run.status == RunStatus.SUCCEEDED
    assert run.started_at and run.finished_at and run.worker_name
    messages = db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id)
                                  .order_by(RunLogLine.seq)).all()
    assert messages[0].startswith("Self-test started")
    assert messages[-1] == "Self-test finished."
    assert run.line_count == len(messages) >= 5
    file = db.session.scalar(select(RunFile).where(RunFile.run_id == run.id))
    assert file.name == "selftest.csv" and file.size > 0 and len(file.sha256) == 64


def test_job_exception_fails_the_run_with_its_message(ctx, worker):
    job = make_job(params={"duration": 0, "lines_per_second": 0, "fail_at_end": True})
    run = final(dispatch.request_run(job).id)
    assert run.status == RunStatus.FAILED
    assert run.message == "SelfTestFailure: The self-test was asked to fail at the end."
    assert run.error_count == 1


def test_manual_run_waits_behind_the_running_one(ctx, worker):
    job = make_job(params={"duration": 2, "lines_per_second": 5})
    first = dispatch.request_run(job)
    wait_for(lambda: db.session.get(Run, first.id, populate_existing=True).status == RunStatus.IN_PROGRESS,
             message="first run to start")
    second = dispatch.request_run(job)
    assert second.status == RunStatus.QUEUED and second.enqueued_at is None  # held back, not in RQ
    second = final(second.id)
    first = db.session.get(Run, first.id)
    assert first.status == second.status == RunStatus.SUCCEEDED
    assert second.started_at >= first.finished_at  # never two in progress


def test_arguments_override_parameters_and_bad_ones_are_refused(ctx, worker):
    import pytest

    from webapp.jobtypes.registry import InvalidArguments

    job = make_job(params={"duration": 0, "lines_per_second": 0})
    with pytest.raises(InvalidArguments, match="Unknown argument"):
        dispatch.request_run(job, args="colour=blue")
    with pytest.raises(InvalidArguments, match="fail_at_end"):
        dispatch.request_run(job, args="fail_at_end=perhaps")
    assert db.session.scalar(select(Run).where(Run.job_id == job.id)) is None
    run = final(dispatch.request_run(job, args="fail_at_end=yes").id)
    assert run.status == RunStatus.FAILED and run.args == "fail_at_end=yes"


def test_run_selected_queues_one_run_per_job_and_all_finish(ctx, worker):
    from webapp.models import AuditEvent, Job

    user = make_user()
    jobs = [make_job() for _ in range(50)]
    busy = make_job(params={"duration": 60, "lines_per_second": 1})
    active = dispatch.request_run(busy)
    removed = make_job()
    removed.state = "removed"
    gone_type = make_job(job_type="tests.uninstalled")
    db.session.commit()
    run_ids, refused = dispatch.request_runs(jobs + [busy, removed, gone_type], user=user)
    assert len(run_ids) == 51
    assert len(refused) == 2 and any("is removed" in r for r in refused) and any("cannot run" in r for r in refused)
    waiting = db.session.get(Run, run_ids[-1])
    assert waiting.job_id == busy.id and waiting.enqueued_at is None  # behind the active run
    busy.params = {"duration": 0, "lines_per_second": 0}  # what its waiting run will do
    db.session.commit()
    dispatch.cancel_run(db.session.get(Run, active.id))
    runs = [final(run_id, timeout=120) for run_id in run_ids]
    assert {run.job_id for run in runs} == {job.id for job in jobs + [busy]}
    assert all(run.status == RunStatus.SUCCEEDED and run.requested_by_id == user.id for run in runs)
    audited = db.session.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "run_now",
                                                                   AuditEvent.actor_id == user.id)).all()
    assert sorted(audited) == sorted(job.id for job in jobs + [busy])
    assert db.session.get(Job, removed.id).state == "removed"
