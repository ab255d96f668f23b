"""Planned fires for the scheduler benchmarks: scheduler processes, poll plans set in bulk, and
the lateness, early fires, duplicates and misses of the occurrences in a window.

Lateness of a fire = Run.created_at - Run.occurrence_at: how long after its planned instant the
occurrence was claimed in the database (the run row is the claim; created_at is taken when the
row is inserted, before the commit). Where the benchmark reads them, the RQ jobs' enqueued_at
give the lateness of the hand-over to RQ too, commit and enqueue included. A run created before
its occurrence_at is an early fire. Two runs of one occurrence cannot exist (unique constraint), so a
duplicate is an occurrence logged as fired twice by the schedulers. A miss is a planned
occurrence in the window without a run.
"""
import re
import time
from collections import Counter
from datetime import timedelta

from common import BenchError, ms, percentile, wait_until

FIRED_LINE = re.compile(r"occurrence fired job=(\d+) at=(\S+)")


def add_scheduler_arguments(parser):
    parser.add_argument("--reap-seconds", type=int, default=5, help="FIRETIME_REAP_SECONDS (default 5)")
    parser.add_argument("--resync-seconds", type=int, default=60, help="FIRETIME_RESYNC_SECONDS (default 60)")


def start_schedulers(env, count, options):
    """`python worker.py scheduler` processes: interval 1 s, reaper and resync as the options say."""
    settings = {"FIRETIME_SCHEDULER_INTERVAL": "1", "FIRETIME_REAP_SECONDS": str(options.reap_seconds),
                "FIRETIME_RESYNC_SECONDS": str(options.resync_seconds)}
    return [env.processes.project(f"scheduler-{n + 1}", "scheduler", env=settings) for n in range(count)]


def set_poll_plans(anchors: dict, seconds: int):
    """Give each job {id: first fire (aware)} a poll plan every `seconds` from that instant, with
    next_fire_at on it, in one executemany, as saving the plans would; the caller places them."""
    from sqlalchemy import bindparam, update

    from webapp.extensions import db
    from webapp.models import Job

    table = Job.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("job")).values(
            plan=bindparam("new_plan"), next_fire_at=bindparam("first"), state="active"),
        [{"job": job_id, "new_plan": {"kind": "poll", "seconds": seconds, "anchor": at.isoformat()}, "first": at}
         for job_id, at in anchors.items()])
    db.session.commit()


def place_plans(job_ids) -> float:
    """sync.place() each job's next occurrence in rq-scheduler, as saving its plan does; seconds taken."""
    from sqlalchemy import select

    from webapp.extensions import db, redis_client
    from webapp.models import Job
    from webapp.scheduling import sync

    started = time.perf_counter()
    for job in db.session.scalars(select(Job).where(Job.id.in_(list(job_ids)))).all():
        sync.place(job, redis_client.conn)
    db.session.remove()
    return time.perf_counter() - started


def plan_window(job_ids, seconds, lead) -> tuple[dict, object]:
    """Poll plans every `seconds` for these jobs, their first fires spread evenly over one period
    starting `lead` seconds from now, placed; returns ({job id: first fire}, start). The placing
    must end before the first fire, or the window would start with fires placed late."""
    from webapp.models.types import utcnow

    start = utcnow().replace(microsecond=0) + timedelta(seconds=lead)
    anchors = {job_id: start + timedelta(seconds=n * seconds // len(job_ids)) for n, job_id in enumerate(job_ids)}
    set_poll_plans(anchors, seconds)
    placing = place_plans(job_ids)
    if utcnow() > start - timedelta(seconds=1):
        raise BenchError(f"placing {len(job_ids):,} plans took {placing:.1f} s, past the first fire {lead} s after "
                         "the start: give a longer --lead")
    print(f"  {len(job_ids):,} poll plans every {seconds} s placed in {placing:.1f} s; first fire in "
          f"{(start - utcnow()).total_seconds():.1f} s", flush=True)
    return anchors, start


def wait_ready(probe_job_id: int, timeout: float, schedulers) -> float:
    """Give one job a poll plan firing every second and wait for its first planned run: then a
    scheduler is up and firing. The probe is then disabled again. Returns the seconds waited."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Job, Run
    from webapp.models.types import utcnow
    from webapp.scheduling import sync

    started = time.perf_counter()
    first = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    set_poll_plans({probe_job_id: first}, 1)
    place_plans([probe_job_id])

    def fired():
        for process in schedulers:
            if not process.alive():
                raise BenchError(f"a scheduler exited; its log {process.log_path}:\n{process.output()[-3000:]}")
        found = db.session.scalar(select(Run.id).where(Run.job_id == probe_job_id, Run.occurrence_at >= first))
        db.session.commit()
        return found

    wait_until(fired, timeout, 0.5, "the first planned fire of a scheduler")
    job = db.session.get(Job, probe_job_id)
    job.plan = {"kind": "disabled"}
    sync.reschedule(job)
    db.session.remove()
    return time.perf_counter() - started


def fires(job_ids, start, end):
    """(job id, occurrence_at, created_at) of the planned runs of these jobs (None: all jobs) whose
    occurrence lies in [start, end)."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Run

    query = select(Run.job_id, Run.occurrence_at, Run.created_at, Run.id, Run.status, Run.trigger).where(
        Run.occurrence_at >= start, Run.occurrence_at < end)
    if job_ids is not None:
        query = query.where(Run.job_id.in_(list(job_ids)))
    rows = db.session.execute(query).all()
    db.session.commit()
    return rows


def expected_occurrences(anchors: dict, seconds: int, start, end) -> set:
    """(job id, occurrence) of every poll fire in [start, end)."""
    wanted = set()
    step = timedelta(seconds=seconds)
    for job_id, anchor in anchors.items():
        at = anchor
        while at < start:
            at += step
        while at < end:
            wanted.add((job_id, at))
            at += step
    return wanted


def fired_twice(log_paths) -> tuple[int, int]:
    """(occurrences logged as fired more than once, lines matched) over the schedulers' logs."""
    seen = Counter()
    for path in log_paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        seen.update(FIRED_LINE.findall(text))
    return sum(1 for count in seen.values() if count > 1), sum(seen.values())


def lateness_summary(rows) -> dict:
    return lateness_summary_of([(row.created_at - row.occurrence_at).total_seconds() for row in rows])


def lateness_summary_of(late) -> dict:
    return {"fires": len(late), "p50": percentile(late, 50), "p95": percentile(late, 95),
            "p99": percentile(late, 99), "max": max(late, default=float("nan")),
            "min": min(late, default=float("nan")), "early": sum(1 for x in late if x < 0)}


def print_lateness(summary, indent="  "):
    print(f"{indent}fires {summary['fires']:,}: lateness p50 {ms(summary['p50'])} ms, p95 {ms(summary['p95'])} ms, "
          f"p99 {ms(summary['p99'])} ms, max {ms(summary['max'])} ms, min {ms(summary['min'])} ms; "
          f"early {summary['early']}")


def print_early(rows, indent="  ", most=5):
    """The runs created before their occurrence, which must not exist."""
    early = [row for row in rows if row.created_at < row.occurrence_at]
    for row in early[:most]:
        print(f"{indent}early: run {row.id} of job {row.job_id} ({row.trigger}, {row.status}) created "
              f"{row.created_at:%H:%M:%S.%f} for the occurrence at {row.occurrence_at:%H:%M:%S}")


def print_window(title, rows, expected, log_paths):
    """Lateness, early fires, duplicates (logged as fired twice) and misses of a window's fires."""
    got = {(row.job_id, row.occurrence_at) for row in rows}
    twice, lines = fired_twice(log_paths)
    print(f"\n{title} (lateness = run created_at - occurrence_at):")
    print_lateness(lateness_summary(rows))
    print_early(rows)
    print(f"  duplicates (occurrences logged as fired twice): {twice} of {lines:,} 'occurrence fired' lines; "
          f"misses: {len(expected - got)} of {len(expected):,} planned occurrences")


def print_handed(rows, handed: dict, indent="  "):
    """Lateness of the hand-over to RQ: the RQ job's enqueued_at - the occurrence, for the window's
    runs whose RQ job was seen (planned runs that found their job busy are skipped, never queued)."""
    late = [(handed[row.id] - row.occurrence_at).total_seconds() for row in rows if row.id in handed]
    if not late:
        return
    summary = lateness_summary_of(late)
    print(f"{indent}handed to RQ (RQ enqueued_at - occurrence_at), {summary['fires']:,} runs: p50 "
          f"{ms(summary['p50'])} ms, p95 {ms(summary['p95'])} ms, p99 {ms(summary['p99'])} ms, max "
          f"{ms(summary['max'])} ms, min {ms(summary['min'])} ms; early {summary['early']}")


def print_timeline(rows, start, slice_seconds, indent="  "):
    """The worst lateness in each slice of the window, to show what a resync or reaper pass costs."""
    slices = {}
    for row in rows:
        index = int((row.occurrence_at - start).total_seconds() // slice_seconds)
        slices.setdefault(index, []).append((row.created_at - row.occurrence_at).total_seconds())
    print(f"{indent}by {slice_seconds} s of the window (from its start): fires, p50 / max lateness ms")
    cells = [f"{i * slice_seconds:>4}s {len(v):>4} {ms(percentile(v, 50)):>5}/{ms(max(v)):>5}"
             for i, v in sorted(slices.items())]
    for n in range(0, len(cells), 4):
        print(indent + "   ".join(cells[n:n + 4]))
