"""The lifecycle's finish hooks: what chains, pause-on-failure and clean-up will hang on."""
from tests.factories import make_job
from webapp.execution import dispatch, lifecycle
from webapp.extensions import db
from webapp.models import Run, RunStatus


def test_finish_hooks_run_after_the_end_and_a_failing_one_changes_nothing(ctx, monkeypatch):
    monkeypatch.setattr(lifecycle, "_FINISH_HOOKS", list(lifecycle._FINISH_HOOKS))
    seen = []

    @lifecycle.on_finish
    def broken(ended):
        raise RuntimeError("a hook with a bug")

    @lifecycle.on_finish
    def remember(ended):
        # Called once the end is committed: another session sees it.
        seen.append((ended, db.session.get(Run, ended.run_id, populate_existing=True).status))

    lifecycle.on_finish(remember)  # registering twice runs it once
    job = make_job()
    run = dispatch.request_run(job)  # queued: no worker in this test
    assert lifecycle.cancel_run(run) == "cancelled"
    [(ended, status)] = seen
    assert (ended.run_id, ended.job_id, ended.status, ended.reports) == (run.id, job.id, RunStatus.CANCELLED, False)
    assert status == RunStatus.CANCELLED
    assert db.session.get(Run, run.id, populate_existing=True).status == RunStatus.CANCELLED
