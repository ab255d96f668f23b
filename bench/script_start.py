"""Support scripts: how soon a planned script speaks, and what its child process costs.

    .venv/bin/python bench/script_start.py [--fires 20] [--runs 30] [--database-url URL]

(1) Fire to first line: a script job polled every second (plan {"kind": "poll", "seconds": 1}) with
a real scheduler and a worker on the scripts queue; for each planned run, the time from its
occurrence to the script's first log line in the run's log (the line's time is taken in the work
horse when the line arrives from the child), split into occurrence -> run started (scheduler,
RQ, claim) and run started -> first line (the horse, the child's start, the script).

(2) The child's overhead: runs of a script `warn(...); log(...)` against runs of the plain job
type tests.warns, which logs the same two lines in the work horse, one at a time on the same
worker; a run's time is finished_at - started_at (claim to recorded end). The ratio of the
medians is what running the code in its own process costs a run.
"""
import sys
import time
from datetime import timedelta

from common import BenchError, ms, new_parser, percentile, run_main, wait_until

SCRIPT = "log('first line')\n"
PLAIN_TWIN = "warn('Something looks odd.')\nlog('Carried on.')\n"  # what tests.warns logs


def main(argv=None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--fires", type=int, default=20, help="planned fires to measure (default 20)")
    parser.add_argument("--runs", type=int, default=30, help="runs of each kind for the overhead (default 30)")
    options = parser.parse_args(argv)
    return run_main(options, lambda env: bench(env, options),
                    extra_env={"FIRETIME_JOBTYPE_MODULES": "tests.jobtypes", "FIRETIME_SCHEDULER_INTERVAL": "1"})


def bench(env, options):
    from tests.factories import make_job, make_script_job

    worker = env.processes.project("worker", "--queues", "scripts,default")
    wait_worker(worker)
    print(f"database {env.database.kind}, load {load()}", flush=True)
    overhead(make_script_job(PLAIN_TWIN), make_job(job_type="tests.warns", params={}), options.runs)
    fire_to_first_line(env, make_script_job(SCRIPT), options.fires)


def wait_worker(worker):
    from rq import Worker

    from webapp.extensions import redis_client

    def up():
        if not worker.alive():
            raise BenchError(f"the worker exited:\n{worker.output()[-3000:]}")
        return Worker.all(connection=redis_client.conn)

    wait_until(up, 60, 0.2, "the worker")


def overhead(script_job, plain_job, runs):
    """Alternate the two kinds, one run at a time, so that both see the same machine."""
    times = {"script": [], "plain": []}
    for n in range(runs + 2):
        for kind, job in (("script", script_job), ("plain", plain_job)):
            run = run_once(job)
            if n >= 2:  # the first runs warm the worker's caches
                times[kind].append((run.finished_at - run.started_at).total_seconds())
    script, plain = (percentile(times[k], 50) for k in ("script", "plain"))
    print(f"\n(2) run time (started -> finished), {runs} runs each, one at a time:")
    print(f"  script in its child process: p50 {ms(script)} ms, p95 {ms(percentile(times['script'], 95))} ms")
    print(f"  plain job type in the horse: p50 {ms(plain)} ms, p95 {ms(percentile(times['plain'], 95))} ms")
    print(f"  ratio of the medians: {script / plain:.1f}x (+{ms(script - plain)} ms a run)")


def run_once(job):
    from webapp.execution import dispatch
    from webapp.extensions import db
    from webapp.models import Run, RunStatus

    run_id = dispatch.request_run(job).id

    def ended():
        run = db.session.get(Run, run_id, populate_existing=True)
        db.session.commit()
        return run if run.is_final else None

    run = wait_until(ended, 60, 0.02, f"run {run_id}")
    if run.status not in (RunStatus.SUCCEEDED, RunStatus.WARNINGS):
        raise BenchError(f"run {run_id} of job {job.id} ended {run.status}: {run.message}")
    return run


def fire_to_first_line(env, job, fires):
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Run, RunLogLine, Trigger
    from webapp.models.types import utcnow
    from webapp.scheduling import sync

    scheduler = env.processes.project("scheduler", "scheduler")
    first = utcnow().replace(microsecond=0) + timedelta(seconds=3)
    job.plan = {"kind": "poll", "seconds": 1, "anchor": first.isoformat()}
    job.next_fire_at = first
    db.session.commit()
    sync.place(job)

    def measured():
        if not scheduler.alive():
            raise BenchError(f"the scheduler exited:\n{scheduler.output()[-3000:]}")
        rows = db.session.execute(
            select(Run.occurrence_at, Run.started_at, RunLogLine.at)
            .join(RunLogLine, (RunLogLine.run_id == Run.id) & (RunLogLine.seq == 2))
            .where(Run.job_id == job.id, Run.trigger == Trigger.PLAN, Run.occurrence_at >= first)).all()
        db.session.commit()
        return rows if len(rows) >= fires else None

    started = time.monotonic()
    rows = wait_until(measured, 60 + 3 * fires, 0.5, f"{fires} planned runs")
    skipped = db.session.scalar(select(db.func.count()).select_from(Run).where(
        Run.job_id == job.id, Run.trigger == Trigger.PLAN, Run.status == "skipped"))
    total = [(line - occurrence).total_seconds() for occurrence, _, line in rows]
    to_start = [(begun - occurrence).total_seconds() for occurrence, begun, _ in rows]
    to_line = [(line - begun).total_seconds() for _, begun, line in rows]
    print(f"\n(1) fire -> the script's first line, poll every 1 s, {len(rows)} fires in "
          f"{time.monotonic() - started:.0f} s ({skipped} occurrences skipped: the previous run still active):")
    for title, values in (("occurrence -> first line", total), ("  occurrence -> run started", to_start),
                          ("  run started -> first line", to_line)):
        print(f"  {title:<28} p50 {ms(percentile(values, 50)):>6} ms  p95 {ms(percentile(values, 95)):>6} ms  "
              f"max {ms(max(values)):>6} ms")


def load() -> str:
    from common import load_average

    return load_average()


if __name__ == "__main__":
    sys.exit(main())
