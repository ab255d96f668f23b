"""Is the scheduler on time with many plans? N jobs with poll plans fire about 33 times a second
over a window, and every fire's claim is timed against its planned instant.

    .venv/bin/python bench/scheduler.py                          # 10,000 plans over 300 s, one scheduler
    .venv/bin/python bench/scheduler.py --plans 2000             # same rate, a 60 s window
    .venv/bin/python bench/scheduler.py --schedulers 2
    .venv/bin/python bench/scheduler.py --keep-queued            # runs pile up in RQ, no stand-in worker
    .venv/bin/python bench/scheduler.py --database-url postgresql://postgres@127.0.0.1:5432/test

Seeds N self-test jobs, starts --schedulers processes `python worker.py scheduler` (interval 1 s,
reaper every 5 s, resync every --resync-seconds, 60 by default, so resyncs fall inside the
window), waits until one fires, then gives the N jobs poll plans with a period of N / --rate
seconds (300 s for 10,000 at 33.3/s; at most 300, the longest poll period), their first fires
spread evenly over one period, and places them (sync.place, as saving a plan does). Each job then
fires once in the window. Printed: claim lateness p50/p95/p99/max (Run.created_at -
Run.occurrence_at), early fires (created before the occurrence: must be 0), duplicates
(occurrences logged as fired twice), misses (occurrences in the window without a run), the
lateness per slice of the window, where the scheduler's resyncs show, and the lateness of the
hand-over to RQ (the RQ job's enqueued_at - Run.occurrence_at: after the claim's commit, when a
worker could start the run).

No worker runs: the scheduler claims each fire in the database inline and puts the run on RQ. A
stand-in for workers that keep up marks the window's queued runs succeeded and takes their jobs
off the RQ queue once a second (noting each one's enqueued_at), so the reaper (which looks at
every queued run each pass) sees what it would with workers. --keep-queued leaves them queued, as with no worker: the backlog then grows by N.
"""
import sys
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average, new_parser, run_main  # noqa: E402
import firing  # noqa: E402
import seeding  # noqa: E402


def take_from_rq(handed: dict):
    """Take the queued runs' RQ jobs off the queue, noting when each reached RQ (the job's own
    enqueued_at, to the microsecond) in handed {run id: aware datetime}. Only the jobs read are
    removed: one queued meanwhile is taken, and timed, the next time."""
    from datetime import timezone

    from rq import Queue
    from rq.job import Job as RQJob

    from webapp.execution.rqjobs import run_id_of
    from webapp.extensions import redis_client
    from webapp.jobtypes import registry

    conn = redis_client.conn
    queue = Queue(registry.get("system.selftest").queue, connection=conn)
    ids = queue.get_job_ids()
    for job in RQJob.fetch_many(ids, connection=conn):
        if job is not None and job.enqueued_at is not None and run_id_of(job.id) is not None:
            handed[run_id_of(job.id)] = job.enqueued_at.replace(tzinfo=timezone.utc)
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.lrem(queue.key, 0, job_id)
            pipe.delete(RQJob.key_for(job_id))
        pipe.execute()


def stand_in_for_workers(job_ids, handed: dict):
    """Mark the planned runs these jobs have queued as succeeded, then take their RQ jobs."""
    from sqlalchemy import update

    from webapp.extensions import db
    from webapp.models import Run, RunStatus, Trigger
    from webapp.models.types import utcnow

    now = utcnow()
    db.session.execute(update(Run).where(Run.job_id.between(min(job_ids), max(job_ids)),
                                         Run.status == RunStatus.QUEUED, Run.trigger == Trigger.PLAN)
                       .values(status=RunStatus.SUCCEEDED, started_at=now, finished_at=now))
    db.session.commit()
    take_from_rq(handed)


def watch(options, plan_ids, expected, start, end) -> dict:
    """Until the window's end, and up to 30 s more while some of its occurrences have no run;
    returns {run id: when its RQ job was enqueued}."""
    from webapp.models.types import utcnow

    handed = {}
    while True:
        now = utcnow()
        if now >= end + timedelta(seconds=3):
            if len(firing.fires(plan_ids, start, end)) >= expected or now >= end + timedelta(seconds=30):
                take_from_rq(handed)
                return handed
        if not options.keep_queued:
            stand_in_for_workers(plan_ids, handed)
        time.sleep(1)


def bench(options, env):
    from webapp.models.types import utcnow

    period = max(10, min(300, round(options.plans / options.rate)))
    lead = options.lead if options.lead is not None else 10 + options.plans // 600
    print(f"Scheduler: {options.plans:,} poll plans every {period} s ({options.plans / period:.1f} fires/s), "
          f"{options.schedulers} scheduler process(es), resync every {options.resync_seconds} s, reaper every "
          f"{options.reap_seconds} s; {'runs left queued' if options.keep_queued else 'stand-in workers'}; "
          f"{env.database.kind} (driver {env.database.driver}); load average {load_average()}.", flush=True)
    accounts = seeding.seed_accounts()
    jobs = seeding.seed_jobs(options.plans + 1, accounts, utcnow(), ZoneInfo("UTC"),
                             plan_for=lambda k, anchor: {"kind": "disabled"})
    probe, plan_ids = jobs.ids[-1], list(jobs.ids)[:-1]
    started = utcnow()
    schedulers = firing.start_schedulers(env, options.schedulers, options)
    waited = firing.wait_ready(probe, 300, schedulers)
    print(f"  a scheduler fired {waited:.1f} s after the start", flush=True)
    anchors, start = firing.plan_window(plan_ids, period, lead)
    end = start + timedelta(seconds=period)
    expected = firing.expected_occurrences(anchors, period, start, end)
    handed = watch(options, plan_ids, len(expected), start, end)
    for process in schedulers:
        process.stop()
    rows = firing.fires(plan_ids, start, end)
    firing.print_window(f"Fires in the window of {period} s", rows, expected, [p.log_path for p in schedulers])
    firing.print_handed(rows, handed)
    resyncs = [started + timedelta(seconds=n * options.resync_seconds) for n in range(1, 100)]
    inside = [f"+{(at - start).total_seconds():.0f}s" for at in resyncs if start <= at < end]
    print(f"  the schedulers' periodic resyncs were due about {', '.join(inside) or 'never'} into the window "
          f"(every {options.resync_seconds} s from their start)")
    firing.print_timeline(rows, start, max(10, period // 12))
    print(f"\nLoad average at the end {load_average()}.")


def main(argv=None):
    parser = new_parser(__doc__)
    firing.add_scheduler_arguments(parser)
    parser.add_argument("--plans", type=int, default=10_000, help="jobs with a poll plan (default 10,000)")
    parser.add_argument("--rate", type=float, default=33.3, help="fires per second wanted (default 33.3)")
    parser.add_argument("--schedulers", type=int, default=1, help="scheduler processes (default 1)")
    parser.add_argument("--lead", type=int, help="seconds from placing the plans to the window (default "
                                                 "10 + plans / 600)")
    parser.add_argument("--keep-queued", action="store_true", help="leave fired runs queued (no stand-in worker)")
    options = parser.parse_args(argv)
    if options.plans < 10 or options.rate <= 0 or options.schedulers < 1:
        parser.error("need --plans >= 10, --rate > 0, --schedulers >= 1")
    return run_main(options, lambda env: bench(options, env))


if __name__ == "__main__":
    sys.exit(main())
