"""The lifecycle: its finish hooks (what chains, pause-on-failure and clean-up will hang on),
the claim, and the worker's commits between runs."""
from sqlalchemy import event, func, select

from tests.factories import make_job, make_user
from webapp.execution import dispatch, lifecycle, livelog
from webapp.execution.context import RunAs
from webapp.execution.worker import FiretimeWorker
from webapp.extensions import db, redis_client
from webapp.jobtypes.registry import queue_names
from webapp.models import Run, RunLogLine, RunStatus


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


def test_a_claim_reads_what_the_run_needs_and_takes_the_run_once(ctx):
    operator = make_user(username="claims-operator")
    job = make_job(params={"duration": 2, "lines_per_second": 0}, run_as_id=operator.id, report_enabled=True)
    run_id = dispatch.request_run(job, args="duration=0").id

    claimed = lifecycle.claim(run_id, "host-a.1", live=False)
    assert (claimed.run_id, claimed.job_id, claimed.job_type, claimed.params, claimed.args, claimed.reports) == (
        run_id, job.id, "system.selftest", {"duration": 2, "lines_per_second": 0}, "duration=0", True)
    assert claimed.run_as == RunAs(operator.id, "claims-operator")
    assert lifecycle.claim(run_id, "host-b.2", live=False) is None  # taken: a second worker gets nothing
    run = db.session.get(Run, run_id, populate_existing=True)
    assert (run.status, run.worker_name) == (RunStatus.IN_PROGRESS, "host-a.1") and run.started_at is not None

    unattended = make_job()
    assert lifecycle.claim(dispatch.request_run(unattended).id, "host-a.1", live=False).run_as is None


def test_a_worker_commits_once_between_two_runs_and_records_the_last_end_before_it_stops(ctx):
    """The end of a run commits with the claim of the next one when that one is queued already;
    the last end is recorded on its own. Every run still ends with its log."""
    run_ids = [dispatch.request_run(make_job()).id for _ in range(4)]
    db.session.remove()
    commits = []

    def count(connection):
        commits.append(1)

    event.listen(db.engine, "commit", count)
    try:
        FiretimeWorker(queue_names(), connection=redis_client.conn).work(burst=True)
    finally:
        event.remove(db.engine, "commit", count)
    for run_id in run_ids:
        run = db.session.get(Run, run_id, populate_existing=True)
        assert run.status == RunStatus.SUCCEEDED
        kept = db.session.scalar(select(func.count()).select_from(RunLogLine).where(RunLogLine.run_id == run_id))
        assert kept == run.line_count >= 2
        # Live viewers were told it ended (the end marker goes with the next run's start).
        entries = [fields for _, fields in livelog.read(redis_client.conn, run_id)]
        assert entries[-1] == {"t": "end", "status": "succeeded"}
        assert livelog.progress(redis_client.conn, run_id)["status"] == "succeeded"
    assert len(commits) == len(run_ids) + 1  # was two a run: the claim, then the end


def test_an_outcome_too_large_for_the_shared_area_still_reaches_the_database(ctx, monkeypatch):
    from webapp.execution import runner

    monkeypatch.setattr(runner.Handoff, "SIZE", 4096)
    small = dispatch.request_run(make_job(params={"duration": 0, "lines_per_second": 0})).id
    large = dispatch.request_run(make_job(params={"duration": 1, "lines_per_second": 200})).id
    db.session.remove()
    FiretimeWorker(queue_names(), connection=redis_client.conn).work(burst=True)
    for run_id in (small, large):
        run = db.session.get(Run, run_id, populate_existing=True)
        assert run.status == RunStatus.SUCCEEDED, run.message
        assert db.session.scalar(select(func.count()).select_from(RunLogLine)
                                 .where(RunLogLine.run_id == run_id)) == run.line_count >= 2
    assert db.session.get(Run, large).line_count > 150
