"""Occurrences due at the same instant are claimed together: one transaction whatever their
number, and one that cannot fire never holds up the others."""
from datetime import timedelta

from sqlalchemy import event, select

from tests.factories import make_job
from webapp.extensions import db, redis_client
from webapp.models import Job, Run, RunStatus
from webapp.models.types import utcnow
from webapp.scheduling import sync
from webapp.scheduling.service import FiretimeScheduler


def due_now(count, **fields):
    at = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    jobs = [make_job(plan={"kind": "cron", "expression": "*/5 * * * *"}, **fields) for _ in range(count)]
    for job in jobs:
        job.next_fire_at = at
    db.session.commit()
    for job in jobs:
        sync.place(job)
    return jobs, at


def statements_of_a_pass(app) -> tuple[int, list]:
    seen = []

    def count(*_):
        seen.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        fired = FiretimeScheduler(app, connection=redis_client.conn).fire_due()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(seen), fired


def test_fires_due_together_cost_the_same_statements_whatever_their_number(ctx):
    few, at = due_now(2)
    few_statements, fired = statements_of_a_pass(ctx)
    assert len(fired) == 2
    many, at = due_now(40)
    many_statements, fired = statements_of_a_pass(ctx)
    assert len(fired) == 40 and all(run is not None for run in fired)
    assert many_statements == few_statements
    runs = db.session.scalars(select(Run).where(Run.job_id.in_([job.id for job in many]))).all()
    assert sorted(run.job_id for run in runs) == sorted(job.id for job in many)
    assert {run.occurrence_at for run in runs} == {at} and {run.status for run in runs} == {RunStatus.QUEUED}
    assert all(run.created_at >= at for run in runs)  # never early
    for job in many:  # each one's next occurrence is placed
        job = db.session.get(Job, job.id)
        assert job.prev_fire_at == at and job.next_fire_at > at
    entries = {m.decode(): s for m, s in redis_client.conn.zrange(sync.scheduler().scheduled_jobs_key, 0, -1,
                                                                      withscores=True)}
    assert all(entries[sync.occurrence_id(job.id)] == db.session.get(Job, job.id).next_fire_at.timestamp()
               for job in many)


def test_a_job_that_cannot_fire_does_not_hold_up_the_others_due_with_it(ctx):
    jobs, at = due_now(4)
    broken, moved, busy = jobs[1], jobs[2], jobs[3]
    db.session.execute(Job.__table__.update().where(Job.id == broken.id)
                       .values(plan={"kind": "cron", "expression": "not a cron line"}))
    later = at + timedelta(minutes=7)
    moved.next_fire_at = later  # saved meanwhile in the web process: this entry is stale
    db.session.add(Run(job_id=busy.id, trigger="hand", enqueued_at=utcnow()))  # a run ahead of the fire
    db.session.commit()
    FiretimeScheduler(ctx, connection=redis_client.conn).fire_due()
    runs = {run.job_id: run for run in db.session.scalars(select(Run).where(Run.occurrence_at == at))}
    assert set(runs) == {jobs[0].id, busy.id}
    assert runs[jobs[0].id].status == RunStatus.QUEUED
    assert runs[busy.id].status == RunStatus.SKIPPED and "still queued" in runs[busy.id].message
    assert db.session.get(Job, broken.id).next_fire_at == at  # left as it was, for the next resync
    entries = {m.decode(): s for m, s in redis_client.conn.zrange(sync.scheduler().scheduled_jobs_key, 0, -1,
                                                                      withscores=True)}
    assert entries[sync.occurrence_id(moved.id)] == later.timestamp()  # put back at its new time


def test_a_fire_during_a_resync_is_not_put_back(ctx, monkeypatch):
    from webapp.execution import dispatch

    (job,), at = due_now(1)
    conn = redis_client.conn
    real_zrange = conn.zrange

    def fire_meanwhile(*args, **kwargs):  # the firing loop fires while the resync reads
        if dispatch.fire_occurrence(job.id, at.isoformat()) is None:
            raise AssertionError("the occurrence did not fire")
        return real_zrange(*args, **kwargs)

    monkeypatch.setattr(conn, "zrange", fire_meanwhile)
    sync.resync()
    monkeypatch.setattr(conn, "zrange", real_zrange)
    following = db.session.get(Job, job.id).next_fire_at
    assert following > at
    # The entry holds the next occurrence, not the one that just fired.
    assert conn.zscore(sync.scheduler().scheduled_jobs_key, sync.occurrence_id(job.id)) == following.timestamp()
