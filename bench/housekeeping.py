"""What the scheduler's housekeeping costs with 10,000 jobs and 1,000,000 runs, and how late planned
fires are while it runs.

    .venv/bin/python bench/housekeeping.py                      # 10,000 jobs, 1,000,000 runs, SQLite
    .venv/bin/python bench/housekeeping.py --runs 100000        # quicker
    .venv/bin/python bench/housekeeping.py --database-url postgresql://postgres@127.0.0.1:5432/test

Seeds (in bulk, see bench/seeding.py) 10,000 self-test jobs with daily, interval and cron plans
(one in twenty disabled) and --runs finished runs; then, as a busy installation has them, 20 jobs
with a run in progress (its heartbeat kept in Redis) and a run waiting behind it, and 10 runs
asked for by hand (dispatch.request_run) that wait in RQ, no worker taking them. Then, in this
process, with no scheduler running:

  resync     sync.resync() the first time (Redis holds no occurrence), then --passes times when
             nothing changed, then after FLUSHALL (Redis emptied: every plan placed again);
  reaper     --passes calls of Reaper().run_once() on one Reaper, as the scheduler makes them,
             each with its SQL statements counted and the slowest shown; then one more after
             the FLUSHALL, when it finds the RQ jobs of the queued runs gone and queues them again.

Then it starts a real scheduler (`python worker.py scheduler`, interval 1 s, reaper every 5 s,
resync every 60 s), waits until it fires, gives --poll-jobs jobs poll plans every --poll-seconds
(their first fires spread evenly over one period) and watches a --window of seconds. Printed:
lateness (run created_at - occurrence_at) p50/p95/p99/max of every planned fire in the window,
early fires, misses among the poll jobs' occurrences, and the worst lateness per 10 s of the
window, where a resync or a slow reaper pass shows.
"""
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SqlTimer, load_average, ms, new_parser, one_line, run_main  # noqa: E402
import firing  # noqa: E402
import seeding  # noqa: E402

TIMEZONE = "Europe/Amsterdam"


def timed(label, call):
    """Run call() once with its SQL statements timed; print and return (seconds, slowest statement)."""
    from webapp.extensions import db

    with SqlTimer(db.engine) as timer:
        started = time.perf_counter()
        report = call()
        seconds = time.perf_counter() - started
    db.session.remove()
    statements = timer.take()
    slowest = max(statements, default=(0.0, ""), key=lambda s: s[0])
    print(f"  {label:<34} {ms(seconds):>7} ms  {len(statements):>5} statements, SQL {ms(sum(s for s, _ in statements))}"
          f" ms, slowest {ms(slowest[0])} ms  {report}", flush=True)
    return seconds, slowest


def keep_heartbeats(run_ids, seconds=3600):
    """The runs in progress stay alive, as if their workers were beating (they are not reaped)."""
    from webapp.execution import livelog
    from webapp.extensions import redis_client

    for run_id in run_ids:
        livelog.heartbeat(redis_client.conn, run_id, seconds)


def seed(options, now):
    from webapp.execution import dispatch
    from webapp.extensions import db
    from webapp.models import Job

    started = time.perf_counter()
    accounts = seeding.seed_accounts()
    jobs = seeding.seed_jobs(options.jobs, accounts, now, ZoneInfo(TIMEZONE))
    timeline = seeding.Timeline(options.runs, now - timedelta(minutes=5))
    seeding.insert_runs(1, options.runs, timeline, jobs, accounts, progress=seeding.every_few_seconds("runs"))
    ids = list(jobs.ids)
    active = seeding.add_active_runs(ids[1:21], now, accounts)
    keep_heartbeats(active["in_progress"])
    for job_id in ids[21:31]:  # queued and handed to RQ; no worker takes them
        dispatch.request_run(db.session.get(Job, job_id))
    done = seeding.settle_statistics()
    db.session.remove()
    print(f"Seeded {options.jobs:,} jobs, {options.runs:,} runs, 20 in progress with 20 waiting behind them, 10 "
          f"queued in RQ, in {time.perf_counter() - started:.0f} s; {done}.", flush=True)
    return jobs, active


def measure_in_process(options, env, active):
    from webapp.execution.recovery import Reaper
    from webapp.extensions import redis_client
    from webapp.scheduling import sync

    print(f"\nResync, in this process (load average {load_average()}):")
    timed("first (Redis holds no occurrence)", sync.resync)
    unchanged = [timed(f"nothing changed, #{n + 1}", sync.resync)[0] for n in range(options.passes)]

    print(f"\nReaper passes, in this process, one Reaper (load average {load_average()}):")
    reaper = Reaper()
    passes = [timed(f"pass {n + 1}", reaper.run_once) for n in range(options.passes)]

    print("\nAfter FLUSHALL (Redis emptied; the heartbeats of the runs in progress are put back):")
    redis_client.conn.flushall()
    emptied = timed("resync, Redis empty", sync.resync)[0]
    keep_heartbeats(active["in_progress"])
    time.sleep(11)  # the reaper queues again only runs handed to RQ more than 10 s ago
    timed("reaper pass", reaper.run_once)
    slowest = max((p[1] for p in passes), key=lambda s: s[0])
    print(f"\n  reaper pass: median {ms(statistics.median(p[0] for p in passes))} ms, max "
          f"{ms(max(p[0] for p in passes))} ms; slowest statement {ms(slowest[0])} ms:\n    {one_line(slowest[1], 400)}")
    print(f"  resync: nothing changed median {ms(statistics.median(unchanged))} ms; Redis empty {ms(emptied)} ms")


def measure_scheduler(options, env, jobs, active):
    from webapp.models.types import utcnow

    print(f"\nA scheduler process (interval 1 s, reaper every {options.reap_seconds} s, resync every "
          f"{options.resync_seconds} s); waiting for its first fire ...", flush=True)
    schedulers = firing.start_schedulers(env, 1, options)
    waited = firing.wait_ready(jobs.ids[-1], 300, schedulers)
    busy = set(jobs.ids[:31]) | {jobs.ids[-1]}
    poll_jobs = [job_id for job_id in jobs.ids if job_id not in busy][:options.poll_jobs]
    print(f"  it fired {waited:.1f} s after its start", flush=True)
    anchors, start = firing.plan_window(poll_jobs, options.poll_seconds, options.lead)
    end = start + timedelta(seconds=options.window)
    print(f"  watching a window of {options.window} s (load average {load_average()}) ...", flush=True)
    time.sleep(max(0.0, (end - utcnow()).total_seconds() + 5))
    for process in schedulers:
        process.stop()
    rows = firing.fires(None, start, end)
    expected = firing.expected_occurrences(anchors, options.poll_seconds, start, end)
    firing.print_window("Planned fires in the window (all jobs; misses among the poll jobs)", rows, expected,
                        [p.log_path for p in schedulers])
    firing.print_timeline(rows, start, 10)


def bench(options, env):
    from webapp.models.types import utcnow

    print(f"Housekeeping with {options.jobs:,} jobs and {options.runs:,} runs; {env.database.kind} (driver "
          f"{env.database.driver}); {os.cpu_count()} CPUs, load average {load_average()}.", flush=True)
    jobs, active = seed(options, utcnow())
    measure_in_process(options, env, active)
    measure_scheduler(options, env, jobs, active)
    print(f"\nLoad average at the end {load_average()}. Scheduler log: "
          f"{env.logdir / 'scheduler-1.log' if options.log_dir else '(removed; keep it with --log-dir)'}")


def main(argv=None):
    parser = new_parser(__doc__)
    firing.add_scheduler_arguments(parser)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs (default 10,000)")
    parser.add_argument("--runs", type=int, default=1_000_000, help="finished runs (default 1,000,000)")
    parser.add_argument("--passes", type=int, default=5, help="timed reaper passes and unchanged resyncs (default 5)")
    parser.add_argument("--poll-jobs", type=int, default=100, help="jobs given poll plans (default 100)")
    parser.add_argument("--poll-seconds", type=int, default=10, help="their period (default 10)")
    parser.add_argument("--window", type=int, default=130, help="seconds of fires watched (default 130)")
    parser.add_argument("--lead", type=int, default=10, help="seconds from placing the plans to their first fire")
    options = parser.parse_args(argv)
    if options.jobs < 200 or options.runs < 1000 or not 1 <= options.poll_jobs <= options.jobs - 40:
        parser.error("need --jobs >= 200, --runs >= 1000, 1 <= --poll-jobs <= jobs - 40")
    return run_main(options, lambda env: bench(options, env), extra_env={"FIRETIME_TIMEZONE": TIMEZONE})


if __name__ == "__main__":
    sys.exit(main())
