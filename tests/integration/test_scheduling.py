"""Planned fires: rq-scheduler holds the next occurrence, the database claims it."""
from datetime import timedelta

from sqlalchemy import func, select

from tests.conftest import wait_for
from tests.factories import make_job
from webapp.execution import dispatch
from webapp.extensions import db, redis_client
from webapp.models import Job, Run, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.scheduling import sync


def scheduled_entries():
    conn = redis_client.conn
    return {member.decode(): score for member, score in
            conn.zrange(sync.scheduler().scheduled_jobs_key, 0, -1, withscores=True)}


def test_saving_a_plan_places_its_next_occurrence(ctx):
    job = make_job(plan={"kind": "cron", "expression": "30 2 * * *"})
    sync.reschedule(job)
    local = job.next_fire_at.astimezone(sync.timezone())
    assert (local.hour, local.minute) == (2, 30)  # server time zone, not UTC
    assert scheduled_entries() == {sync.occurrence_id(job.id): job.next_fire_at.timestamp()}


def test_redis_emptied_then_resynced_loses_no_schedule(ctx):
    jobs = [make_job(plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": [f"0{i}:15"]})
            for i in range(1, 4)]
    disabled = make_job(plan={"kind": "disabled"})
    for job in jobs + [disabled]:
        sync.reschedule(job)
    before = scheduled_entries()
    assert len(before) == 3
    redis_client.conn.flushall()
    assert scheduled_entries() == {}
    sync.resync()
    assert scheduled_entries() == before
    assert sync.occurrence_id(disabled.id) not in scheduled_entries()


def test_resync_drops_occurrences_of_removed_jobs(ctx):
    job = make_job(plan={"kind": "poll", "seconds": 60, "anchor": utcnow().replace(microsecond=0).isoformat()})
    sync.reschedule(job)
    job.state = "removed"
    db.session.commit()
    sync.resync()
    assert scheduled_entries() == {}
    assert db.session.get(Job, job.id).next_fire_at is None


def test_an_occurrence_fires_once_however_often_it_is_delivered(ctx):
    job = make_job(plan={"kind": "cron", "expression": "*/5 * * * *"})
    sync.reschedule(job)
    fire_at = job.next_fire_at
    first = dispatch.fire_occurrence(job.id, fire_at.isoformat())
    again = dispatch.fire_occurrence(job.id, fire_at.isoformat())
    assert first is not None and again is None
    assert db.session.scalar(select(func.count(Run.id)).where(Run.job_id == job.id)) == 1
    assert first.trigger == Trigger.PLAN and first.occurrence_at == fire_at
    job = db.session.get(Job, job.id)
    assert job.prev_fire_at == fire_at and job.next_fire_at == fire_at + timedelta(minutes=5)


def test_planned_fire_that_finds_a_run_active_is_skipped_with_reason(ctx):
    job = make_job(plan={"kind": "cron", "expression": "*/5 * * * *"})
    sync.reschedule(job)
    manual = dispatch.request_run(job)  # queued: no worker in this test
    fire_at = job.next_fire_at
    skipped = dispatch.fire_occurrence(job.id, fire_at.isoformat())
    assert skipped.status == RunStatus.SKIPPED
    assert skipped.message == f"Skipped: run #{manual.id} of this job was still queued."
    assert db.session.get(Job, job.id).next_fire_at == fire_at + timedelta(minutes=5)  # the plan moves on


def test_missed_occurrences_after_downtime_fire_once(ctx):
    job = make_job(plan={"kind": "interval", "every": 10, "unit": "minutes",
                         "anchor": (utcnow() - timedelta(hours=5)).replace(microsecond=0).isoformat()})
    job.next_fire_at = utcnow().replace(microsecond=0) - timedelta(hours=3)  # the scheduler was down
    db.session.commit()
    sync.resync()
    assert scheduled_entries()[sync.occurrence_id(job.id)] == job.next_fire_at.timestamp()
    run = dispatch.fire_occurrence(job.id, job.next_fire_at.isoformat())
    assert run.status == RunStatus.QUEUED
    job = db.session.get(Job, job.id)
    assert utcnow() < job.next_fire_at <= utcnow() + timedelta(minutes=10)
    assert db.session.scalar(select(func.count(Run.id)).where(Run.job_id == job.id)) == 1


def test_skip_next_occurrence_moves_the_plan_on(ctx):
    job = make_job(plan={"kind": "cron", "expression": "0 * * * *"})
    sync.reschedule(job)
    nxt = job.next_fire_at
    run = dispatch.skip_next_occurrence(job)
    assert run.status == RunStatus.SKIPPED and run.occurrence_at == nxt
    job = db.session.get(Job, job.id)
    assert job.next_fire_at == nxt + timedelta(hours=1)
    assert scheduled_entries()[sync.occurrence_id(job.id)] == job.next_fire_at.timestamp()


def test_two_schedulers_fire_every_occurrence_exactly_once(ctx, start_process, worker):
    anchor = utcnow().replace(microsecond=0) + timedelta(seconds=2)
    jobs = [make_job(plan={"kind": "poll", "seconds": 1, "anchor": anchor.isoformat()}) for _ in range(4)]
    for job in jobs:
        sync.reschedule(job)
    first, second = start_process("scheduler"), start_process("scheduler")

    def each_fired_four_times():
        counts = db.session.execute(select(Run.job_id, func.count(Run.id)).group_by(Run.job_id)).all()
        db.session.commit()
        return len(counts) == len(jobs) and all(n >= 4 for _, n in counts)

    wait_for(each_fired_four_times, 30, message="four occurrences of each job")
    first.stop()
    second.stop()
    logs = first.output() + second.output()
    assert "Traceback" not in logs
    fired = [line.split("occurrence fired ", 1)[1].split(" run=")[0] for line in logs.splitlines()
             if "occurrence fired " in line]
    assert len(fired) == len(set(fired))  # no occurrence fired by both schedulers
    for job in jobs:
        occurrences = db.session.scalars(select(Run.occurrence_at).where(Run.job_id == job.id)
                                         .order_by(Run.occurrence_at)).all()
        assert len(occurrences) >= 4, occurrences
        assert len(fired_for := [f for f in fired if f.startswith(f"job={job.id} ")]) == len(occurrences), fired_for
        # Each is a second of the plan; a pass delayed by load may skip one, never repeat one.
        assert all((at - anchor).total_seconds().is_integer() for at in occurrences)
    statuses = set(db.session.scalars(select(Run.status)))
    assert statuses <= {RunStatus.SUCCEEDED, RunStatus.SKIPPED, RunStatus.QUEUED, RunStatus.IN_PROGRESS}
    assert RunStatus.SUCCEEDED in statuses


def test_scheduler_start_creates_system_jobs_and_places_them(ctx, start_process):
    process = start_process("scheduler")
    wait_for(lambda: len(scheduled_entries()) == 3, 20, message="system jobs placed")  # purge, orphans, report
    process.stop()
    names = set(db.session.scalars(select(Job.name).where(Job.system.is_(True))))
    assert names == {"Purge run history", "Activity report", "Delete orphaned export files"}
    purge = db.session.scalar(select(Job).where(Job.job_type == "system.purge_history"))
    local = purge.next_fire_at.astimezone(sync.timezone())
    assert (local.hour, local.minute) == (2, 30)


def test_resync_rewrites_only_what_is_missing_or_wrong(ctx):
    jobs = [make_job(plan={"kind": "cron", "expression": f"{i} * * * *"}) for i in range(4)]
    for job in jobs:
        sync.reschedule(job)
    assert sync.resync()["placed"] == 0
    conn = redis_client.conn
    key = sync.scheduler().scheduled_jobs_key
    conn.zadd(key, {sync.occurrence_id(jobs[0].id): 12345})  # a wrong time
    conn.zrem(key, sync.occurrence_id(jobs[1].id))  # an entry lost
    conn.delete(f"rq:job:{sync.occurrence_id(jobs[2].id)}")  # a job hash lost: the entry fires without it
    jobs[3].next_fire_at += timedelta(hours=1)  # saved in the database, never placed (Redis was away)
    db.session.commit()
    report = sync.resync()
    assert report == {"placed": 3, "removed": 0, "kept": 1}
    assert scheduled_entries() == {sync.occurrence_id(j.id): db.session.get(Job, j.id).next_fire_at.timestamp()
                                   for j in jobs}


def test_an_occurrence_whose_job_hash_was_lost_fires_from_its_entry(ctx):
    from webapp.scheduling.service import FiretimeScheduler

    job = make_job(plan={"kind": "cron", "expression": "*/5 * * * *"})
    job.next_fire_at = due = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    db.session.commit()
    sync.place(job)
    redis_client.conn.delete(f"rq:job:{sync.occurrence_id(job.id)}")
    FiretimeScheduler(ctx, connection=redis_client.conn).fire_due()
    run = db.session.scalar(select(Run).where(Run.job_id == job.id))
    assert run.occurrence_at == due and run.status == RunStatus.QUEUED
    job = db.session.get(Job, job.id)
    assert scheduled_entries() == {sync.occurrence_id(job.id): job.next_fire_at.timestamp()}
    assert job.next_fire_at > due


def test_resync_after_redis_was_emptied_places_every_plan_again(ctx):
    anchor = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    jobs = [Job(name=f"Poll {n}", job_type="system.selftest", params={},
                plan={"kind": "poll", "seconds": 300, "anchor": (anchor + timedelta(seconds=n % 300)).isoformat()})
            for n in range(1200)]
    db.session.add_all(jobs)
    db.session.commit()
    assert sync.resync()["placed"] == 1200  # next fire times computed, entries written in batches
    redis_client.conn.flushall()
    report = sync.resync()
    assert report == {"placed": 1200, "removed": 0, "kept": 0}
    wanted = {sync.occurrence_id(job_id): at.timestamp()
              for job_id, at in db.session.execute(select(Job.id, Job.next_fire_at))}
    assert scheduled_entries() == wanted
    # Each entry is whole: the scheduler can fire it.
    sample = sync.scheduler().job_class.fetch(sync.occurrence_id(jobs[7].id), connection=redis_client.conn)
    assert sample.args == (jobs[7].id, db.session.get(Job, jobs[7].id).next_fire_at.isoformat())
    assert sync.resync()["placed"] == 0


def test_a_fire_does_not_wait_for_housekeeping(ctx, monkeypatch):
    import multiprocessing
    import os

    from webapp.scheduling.service import FiretimeScheduler

    forked = multiprocessing.get_context("fork")
    in_resync, release, resync_pid = forked.Event(), forked.Event(), forked.Value("i", 0)

    def slow_resync():
        resync_pid.value = os.getpid()
        in_resync.set()
        release.wait(60)

    monkeypatch.setattr(sync, "resync", slow_resync)
    scheduler = FiretimeScheduler(ctx, connection=redis_client.conn)
    scheduler.housekeeping.start()
    try:
        assert in_resync.wait(30), "housekeeping started"
        assert resync_pid.value == scheduler.housekeeping.pid != os.getpid()  # a process of its own
        job = make_job(plan={"kind": "cron", "expression": "* * * * *"})
        job.next_fire_at = utcnow().replace(microsecond=0)
        db.session.commit()
        sync.place(job)
        fired = scheduler.enqueue_jobs()  # while the resync is still busy
        assert len(fired) == 1 and not release.is_set()
        assert db.session.scalar(select(Run.status).where(Run.job_id == job.id)) == RunStatus.QUEUED
    finally:
        release.set()
        scheduler.housekeeping.stop()


def test_the_scheduler_wakes_for_the_next_due_entry_never_before(ctx, start_process):
    start = utcnow().replace(microsecond=0) + timedelta(seconds=4)
    jobs = [make_job(plan={"kind": "poll", "seconds": 300, "anchor": (start + timedelta(seconds=n)).isoformat()})
            for n in range(6)]
    for job in jobs:
        sync.reschedule(job)
    start_process("scheduler")

    def all_fired():
        runs = db.session.scalars(select(Run).where(Run.trigger == Trigger.PLAN)).all()
        db.session.commit()
        return runs if len(runs) == len(jobs) else None

    runs = wait_for(all_fired, 40, message="six fires")
    lateness = sorted((run.created_at - run.occurrence_at).total_seconds() for run in runs)
    assert lateness[0] >= 0, lateness  # never early
    # A scheduler polling once a second is about half a second late on average.
    assert lateness[len(lateness) // 2] < 0.35, lateness
