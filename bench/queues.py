"""The queues of S4 at scale: the queues page, clear, resume, and how soon a pause takes effect
with a real worker and scheduler.

    .venv/bin/python bench/queues.py                        # 10,000 jobs and waiting runs; SQLite
    .venv/bin/python bench/queues.py --quick                # 1,000 of each, fewer requests, one cycle
    .venv/bin/python bench/queues.py --database-url postgresql://postgres@127.0.0.1:5432/test

Seeds in bulk (bench/seeding.py) 12 domains, a superadmin and a domain administrator, --jobs
self-test jobs (the default queue), every one with a plan and a next fire (the planned list), a
history of --history finished runs, and --waiting runs waiting on the default queue: half handed
to RQ (on RQ's list, in order) and half held in the database behind them (one of each per job),
plus --running runs in progress. Then:

1. pages: GET /queues/ as the superadmin and as the domain administrator, and the HTMX fragment
   of the waiting list (page 1, a far page, a filter; the planned list's far page too), through
   Flask's test client in this process (the app's own time: routing, queries, templates), in
   rounds of one request a page; p50 and p95, statements, and each page's slowest statement.
   Goal p95 < 50 ms; for a page over it, its statements are run again alone and the plans of
   the slowest two printed (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE). Every answer must be 200, or
   the script exits 1 (with --strict, also a page over its goal).
2. clear: `queues.clear("default")` of the waiting runs, timed, with its SQL and its RQ part;
   RQ's list must be empty after. Goal < 1 s.
3. resume: every job gets one run held in the database on the paused queue; `queues.resume`
   hands them all to RQ, timed. (They are then cleared again: the clear of runs all on RQ's list.)
4. pause: the jobs above lose their plans; --flow-jobs jobs get poll plans that keep the default
   queue busy, with a real worker (`worker.py --queues default`, as in the Procfile) and the real
   scheduler (`worker.py scheduler`, its interval from config.py). Each of --cycles pauses the
   queue while a run is in progress and others wait on RQ's list, watches --watch seconds, then
   resumes. Printed: the last run start against the pause's commit (none may come later than
   the commit + the worker's PAUSE_RECHECK), the scheduler passes after the commit and what they
   handed to RQ, the scheduler's pass interval (SCHEDULER_INTERVAL, and as measured between its
   firing passes), and from the resume's commit to the first start of a held run.
"""
import random
import re
import sys
import time
from datetime import timedelta
from math import ceil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchError, SqlTimer, load_average, ms, new_parser, one_line, own_context,  # noqa: E402
                    percentile, run_main, signed_in_client, wait_until)
from pages import measure_all  # noqa: E402
import firing  # noqa: E402
import seeding  # noqa: E402

TIMEZONE = "Europe/Amsterdam"
QUEUE = "default"  # the self-test's queue
PAGE_GOAL = 0.050
CLEAR_GOAL = 1.0
REFUSED_LINE = re.compile(r"run=(\d+) not started: queue (\S+) is paused")


# --- data ------------------------------------------------------------------------------------

def every_job_planned(k, anchor):
    """seeding.mixed_plan without its disabled jobs: every job has a next fire."""
    return seeding.mixed_plan(k - 1 if k % 20 == 19 else k, anchor)


def hand_to_rq() -> int:
    """Put every run the database says is handed over on RQ's list, in id order, as
    dispatch would have (one pipeline); returns how many."""
    from sqlalchemy import select

    from webapp.execution.lifecycle import enqueue_many
    from webapp.extensions import db
    from webapp.jobtypes import registry
    from webapp.models import Job, Run, RunStatus

    rows = db.session.execute(select(Run.id, Job.name, Job.job_type).join(Job, Job.id == Run.job_id)
                              .where(Run.status == RunStatus.QUEUED, Run.enqueued_at.isnot(None))
                              .order_by(Run.id)).all()
    db.session.commit()
    enqueue_many([(row.id, row.name, registry.get(row.job_type)) for row in rows])
    return len(rows)


def rq_count() -> int:
    from rq import Queue

    from webapp.extensions import redis_client

    return Queue(QUEUE, connection=redis_client.conn).count


def counts() -> dict:
    """Runs of the default queue by state: handed (queued, on RQ), held, running."""
    from sqlalchemy import case, func, select

    from webapp.execution import queues
    from webapp.extensions import db
    from webapp.models import Job, Run, RunStatus

    state = case((Run.status == RunStatus.IN_PROGRESS, "running"), (Run.enqueued_at.is_(None), "held"),
                 else_="handed")
    rows = db.session.execute(select(state, func.count(Run.id)).join(Job, Job.id == Run.job_id)
                              .where(Run.status.in_([RunStatus.QUEUED, RunStatus.IN_PROGRESS]),
                                     Job.job_type.in_(queues.types_on(QUEUE))).group_by(state)).all()
    db.session.commit()
    return {"handed": 0, "held": 0, "running": 0, **dict(rows)}


def seed(options, now):
    """Accounts, jobs with plans, the history, the waiting and running runs; RQ's list."""
    started = time.perf_counter()
    accounts = seeding.seed_accounts()
    jobs = seeding.seed_jobs(options.jobs, accounts, now, ZoneInfo(TIMEZONE), plan_for=every_job_planned)
    if options.history:
        timeline = seeding.Timeline(options.history, now - timedelta(hours=1))
        seeding.insert_runs(1, options.history, timeline, jobs, accounts,
                            progress=seeding.every_few_seconds("history runs"))
    handed = options.waiting // 2
    seeding.insert_active_runs(jobs.first_id, handed, now - timedelta(minutes=10), "handed", accounts)
    seeding.insert_active_runs(jobs.first_id, options.waiting - handed, now, "held", accounts)
    seeding.insert_active_runs(jobs.first_id + handed, options.running, now - timedelta(minutes=1), "running",
                               accounts)
    on_rq = hand_to_rq()
    statistics = seeding.settle_statistics()
    found = counts()
    print(f"Seeded {options.jobs:,} jobs (every one planned), {options.history:,} finished runs, "
          f"{found['handed']:,} runs handed to RQ ({on_rq:,} on its list, {rq_count():,} there now), "
          f"{found['held']:,} held in the database, {found['running']} in progress; "
          f"{time.perf_counter() - started:.1f} s; {statistics}.", flush=True)
    return accounts, jobs


# --- 1. the page ---------------------------------------------------------------------------

class QueuePages:
    """The queues page and its list fragments, for measure_all: `who` is admin or domain, and
    htmx:<who> for a fragment (HX-Target names the list, as the page's own requests do)."""

    def __init__(self, app, accounts, options):
        self.clients = {"admin": signed_in_client(app, accounts.superadmin, seeding.PASSWORD),
                        "domain": signed_in_client(app, accounts.domain_admin, seeding.PASSWORD)}
        far = max(1, ceil(options.waiting / 10) * 9 // 10)
        far_planned = max(1, ceil(options.jobs / 10) * 9 // 10)
        waiting = f"/queues/?queue={QUEUE}&list=waiting"
        self.paths = [
            ("queues page", "admin", "/queues/"),
            ("queues page, domain administrator", "domain", "/queues/"),
            ("waiting list, page 1", "htmx:admin", waiting),
            (f"waiting list, page {far:,}", "htmx:admin", f"{waiting}&page={far}"),
            ("waiting list, job filter 'nightly'", "htmx:admin", f"{waiting}&f_job=nightly"),
            ("waiting list, held back, by job, page 50", "htmx:admin", f"{waiting}&f_waits=run&sort=job&page=50"),
            ("waiting list, domain administrator", "htmx:domain", waiting),
            (f"planned list, page {far_planned:,}", "htmx:admin",
             f"/queues/?queue={QUEUE}&list=planned&page={far_planned}"),
        ]

    def request(self, who, path):
        if who.startswith("htmx:"):
            args = parse_qs(urlsplit(path).query)
            target = f"q-{args['queue'][0]}-{args['list'][0]}"
            return own_context(self.clients[who[5:]].get, path, headers={"HX-Request": "true", "HX-Target": target})
        return own_context(self.clients[who].get, path)


def bench_pages(env, options, accounts):
    from webapp.extensions import db

    pages = QueuePages(env.app, accounts, options)
    results = measure_all(pages, pages.paths, options, db.engine,
                          f"1. Queues page: {options.waiting:,} waiting runs, {options.jobs:,} planned jobs")
    print(f"\n  Goal p95 < {ms(PAGE_GOAL)} ms; slowest statement of each page (those over {options.show_sql_ms} ms):")
    missed = []
    for label, _, _ in pages.paths:
        result = results[label]
        verdict = "met" if result["p95"] < PAGE_GOAL else "MISSED"
        if verdict != "met":
            missed.append(label)
        seconds, sql = result["slowest"]
        print(f"  {label}: p95 {ms(result['p95'])} ms, goal {verdict}")
        if seconds * 1000 >= options.show_sql_ms:
            print(f"    slowest statement {ms(seconds)} ms: {one_line(sql, 400)}")
    for label, who, path in pages.paths:
        if label in missed:
            explain_slowest(pages, label, who, path)
    return missed


def explain_slowest(pages, label, who, path, most=2):
    """The page's statements run again on their own (median of 3), and the plan of the slowest:
    EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL."""
    from sqlalchemy import event

    from webapp.extensions import db

    captured = []

    def before(_conn, _cursor, statement, parameters, _context, _executemany):
        captured.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        pages.request(who, path)
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    postgresql = db.engine.dialect.name == "postgresql"
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        timed = []
        for statement, parameters in captured:
            if statement.lstrip().upper().startswith("SELECT"):
                runs = []
                for _ in range(3):
                    began = time.perf_counter()
                    cursor.execute(statement, parameters)
                    cursor.fetchall()
                    runs.append(time.perf_counter() - began)
                timed.append((sorted(runs)[1], statement, parameters))
        print(f"\n  Why '{label}' is slow: its {len(timed)} SELECTs take {ms(sum(t for t, _, _ in timed))} ms "
              f"run alone; the slowest {most}:")
        for seconds, statement, parameters in sorted(timed, key=lambda t: -t[0])[:most]:
            print(f"    {ms(seconds)} ms: {one_line(statement, 300)}")
            cursor.execute(("EXPLAIN ANALYZE " if postgresql else "EXPLAIN QUERY PLAN ") + statement, parameters)
            for row in cursor.fetchall():
                print(f"      {row[0] if postgresql else row[-1]}")
        connection.rollback()
    finally:
        connection.close()


# --- 2. clear, 3. resume ----------------------------------------------------------------------

def timed_action(engine, action):
    """Run action() with its SQL statements timed and the Redis side of a clear timed apart;
    returns (outcome, seconds, statements, sql seconds, rq seconds)."""
    from webapp.execution import queues

    drop = queues._drop_from_rq
    rq_time = [0.0]

    def timed_drop(*args):
        began = time.perf_counter()
        try:
            return drop(*args)
        finally:
            rq_time[0] += time.perf_counter() - began

    queues._drop_from_rq = timed_drop
    try:
        with SqlTimer(engine) as timer:
            began = time.perf_counter()
            outcome = action()
            seconds = time.perf_counter() - began
    finally:
        queues._drop_from_rq = drop
    statements = timer.take()
    return outcome, seconds, statements, sum(s for s, _ in statements), rq_time[0]


def superadmin(accounts):
    from webapp.extensions import db
    from webapp.models import User

    return db.session.get(User, accounts.superadmin_id)


def print_action(title, seconds, statements, sql_seconds, rq_seconds, show_sql_ms):
    slowest = max(statements, key=lambda s: s[0], default=(0.0, ""))
    print(f"  {title}: {seconds:.3f} s; {len(statements)} SQL statements taking {sql_seconds:.3f} s"
          f"{f', RQ list and job hashes {rq_seconds:.3f} s' if rq_seconds else ''}; "
          f"the rest (Python, commits, enqueue) {seconds - sql_seconds - rq_seconds:.3f} s")
    if slowest[0] * 1000 >= show_sql_ms:
        print(f"    slowest statement {ms(slowest[0])} ms: {one_line(slowest[1], 400)}")


def bench_clear(options, accounts, title):
    """Clear the default queue, timed; RQ's list and the waiting runs must be gone after."""
    from webapp.execution import queues
    from webapp.extensions import db, redis_client

    before, on_rq = counts(), rq_count()
    outcome, seconds, statements, sql_seconds, rq_seconds = timed_action(
        db.engine, lambda: queues.clear(QUEUE, superadmin(accounts)))
    after, left = counts(), rq_count()
    hashes = len(redis_client.conn.keys("rq:job:firetime-run-*"))
    print(f"\n{title}  (load average {load_average()})")
    print(f"  before: {before['handed']:,} handed to RQ ({on_rq:,} on RQ's list), {before['held']:,} held, "
          f"{before['running']} in progress; {outcome.message}")
    print_action(f"queues.clear({QUEUE!r})", seconds, statements, sql_seconds, rq_seconds, options.show_sql_ms)
    print(f"  after: RQ's list holds {left}, {hashes} run job hashes left in Redis; {after['handed']} handed, "
          f"{after['held']} held, {after['running']} in progress (they go on); goal < {CLEAR_GOAL:g} s "
          f"{'met' if seconds < CLEAR_GOAL else 'MISSED'}")
    problems = []
    if left or after["handed"] or after["held"] or outcome.count != before["handed"] + before["held"]:
        problems.append(f"clear left {left} on RQ's list, {after['handed'] + after['held']} waiting runs; "
                        f"cancelled {outcome.count} of {before['handed'] + before['held']}")
    if after["running"] != before["running"]:
        problems.append(f"clear touched runs in progress: {before['running']} -> {after['running']}")
    return seconds, problems


def bench_resume(options, accounts, jobs):
    """Every job one held run on the paused queue; resume hands them to RQ, timed."""
    from sqlalchemy import update

    from webapp.execution import queues
    from webapp.extensions import db
    from webapp.models import Run, RunStatus
    from webapp.models.types import utcnow

    now = utcnow()
    # Runs in progress end first, so that each job has its held run first in line.
    db.session.execute(update(Run).where(Run.status == RunStatus.IN_PROGRESS)
                       .values(status=RunStatus.SUCCEEDED, finished_at=now, progress=100))
    db.session.commit()
    queues.pause(QUEUE, superadmin(accounts), "bench: resume of held runs")
    seeding.insert_active_runs(jobs.first_id, options.jobs, now, "held", accounts)
    seeding.settle_statistics()
    before = counts()
    outcome, seconds, statements, sql_seconds, _ = timed_action(
        db.engine, lambda: queues.resume(QUEUE, superadmin(accounts)))
    after, on_rq = counts(), rq_count()
    print(f"\n3. Resume of {before['held']:,} held runs of {options.jobs:,} jobs  (load average {load_average()})")
    print_action(f"queues.resume({QUEUE!r})", seconds, statements, sql_seconds, 0.0, options.show_sql_ms)
    print(f"  {outcome.message} After: {on_rq:,} on RQ's list, {after['held']} held, {after['handed']:,} handed")
    problems = []
    if on_rq != before["held"] or after["held"]:
        problems.append(f"resume left {after['held']} held and put {on_rq} of {before['held']} on RQ's list")
    return seconds, problems


# --- 4. pause with a real worker and scheduler -------------------------------------------------

def flow_runs(job_ids):
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Run

    rows = db.session.execute(select(Run.id, Run.trigger, Run.status, Run.created_at, Run.enqueued_at,
                                     Run.started_at, Run.finished_at, Run.message)
                              .where(Run.job_id.in_(list(job_ids))).order_by(Run.id)).all()
    db.session.commit()
    return rows


def committed(call):
    """call() and the instants of the commits it made (after_commit of the app's sessions)."""
    from sqlalchemy import event

    from webapp.extensions import db
    from webapp.models.types import utcnow

    instants = []

    def hook(_session):
        instants.append(utcnow())

    event.listen(db.session, "after_commit", hook)
    try:
        return call(), instants
    finally:
        event.remove(db.session, "after_commit", hook)


def start_flow(env, options, accounts, old_jobs):
    """Plans off for the seeded jobs; flow jobs with poll plans; the worker and the scheduler."""
    from sqlalchemy import update

    from webapp.extensions import db
    from webapp.models import Job
    from webapp.models.types import utcnow

    if old_jobs is not None:
        db.session.execute(update(Job).where(Job.id.in_(list(old_jobs.ids)))
                           .values(plan={"kind": "disabled"}, next_fire_at=None))
    jobs = seeding.seed_jobs(options.flow_jobs + 1, accounts, utcnow(), ZoneInfo(TIMEZONE),
                             plan_for=lambda k, anchor: {"kind": "disabled"}, prefix="Flow ")
    db.session.execute(update(Job).where(Job.id.in_(list(jobs.ids)))
                       .values(params={"duration": options.run_seconds, "lines_per_second": 0}))
    db.session.commit()
    worker = env.processes.project("worker", "--queues", QUEUE)
    scheduler = env.processes.project("scheduler", "scheduler")
    firing.wait_ready(jobs.first_id, 120, [scheduler])
    flow_ids = list(jobs.ids)[1:]
    firing.plan_window(flow_ids, options.poll_seconds, lead=3)
    return flow_ids, worker, scheduler


def busy_now(flow_ids):
    """A run in progress and others waiting on RQ's list: what a pause has to stop."""
    return any(row.status == "in_progress" for row in flow_runs(flow_ids)) and rq_count() > 0


def alive(*processes):
    for process in processes:
        if not process.alive():
            raise BenchError(f"{process.log_path.name} exited; its log:\n{process.output()[-3000:]}")


def refused(worker) -> set:
    """Runs whose claim the worker refused because their queue was paused (from its log)."""
    return {int(run_id) for run_id, queue in REFUSED_LINE.findall(worker.output()) if queue == QUEUE}


def one_cycle(options, accounts, flow_ids, worker, scheduler, recheck):
    """Pause while the queue is busy, watch, resume; the figures of the cycle."""
    from webapp.execution import queues

    time.sleep(random.uniform(0, 1))  # a pause anywhere within the scheduler's second
    wait_until(lambda: busy_now(flow_ids), 60, 0.02, "a run in progress and others on RQ's list")
    refused_before = refused(worker)
    outcome, commits = committed(lambda: queues.pause(QUEUE, superadmin(accounts), "bench"))
    if not outcome.changed or not commits:
        raise BenchError(f"pause did not happen: {outcome.message}")
    paused = commits[-1]
    time.sleep(options.watch)
    alive(worker, scheduler)
    rows = flow_runs(flow_ids)
    cycle = {"paused": paused}
    starts = [row.started_at for row in rows if row.started_at is not None]
    cycle["last_start"] = (max(starts) - paused).total_seconds()
    cycle["late_starts"] = [row.id for row in rows if row.started_at and row.started_at > paused]
    cycle["too_late"] = [row.id for row in rows
                         if row.started_at and row.started_at > paused + timedelta(seconds=recheck)]
    running = [row for row in rows if row.started_at and row.started_at <= paused
               and (row.finished_at is None or row.finished_at > paused)]
    cycle["running"] = len(running)
    cycle["finished"] = sum(1 for row in running if row.status == "succeeded")
    refusals = refused(worker) - refused_before
    cycle["refused"] = len(refusals)
    after = [row for row in rows if row.trigger == "plan" and row.created_at > paused]
    passes = sorted({row.created_at for row in after})
    handed = [row for row in after if row.enqueued_at is not None or row.id in refusals]
    cycle["passes"] = len(passes)
    cycle["handed_passes"] = len({row.created_at for row in handed})
    cycle["handed"] = len(handed)
    cycle["last_handed"] = max(((row.created_at - paused).total_seconds() for row in handed), default=None)
    cycle["held"] = sum(1 for row in after if row.status == "queued" and row.enqueued_at is None)
    cycle["skipped_paused"] = sum(1 for row in after if row.status == "skipped" and "is paused" in row.message)
    held_before = counts()["held"]
    outcome, commits = committed(lambda: queues.resume(QUEUE, superadmin(accounts)))
    resumed = commits[0]

    def first_start():
        found = [row.started_at for row in flow_runs(flow_ids) if row.started_at and row.started_at > resumed]
        return min(found) if found else None

    first = wait_until(first_start, 60, 0.02, "a run to start after the resume")
    cycle.update(held_at_resume=held_before, released=outcome.count,
                 first_after_resume=(first - resumed).total_seconds())
    return cycle


def pass_intervals(flow_ids):
    """Seconds between the scheduler's firing passes (each pass gives its runs one created_at)."""
    created = sorted({row.created_at for row in flow_runs(flow_ids) if row.trigger == "plan"})
    return [(b - a).total_seconds() for a, b in zip(created, created[1:])]


def bench_pause(env, options, accounts, old_jobs):
    from config import Config
    from webapp.execution.worker import PAUSE_RECHECK

    interval = Config().SCHEDULER_INTERVAL
    started = time.perf_counter()
    flow_ids, worker, scheduler = start_flow(env, options, accounts, old_jobs)
    print(f"\n4. Pause with a real worker and scheduler  (load average {load_average()})")
    print(f"  {len(flow_ids)} self-test jobs of {options.run_seconds:g} s, each polled every {options.poll_seconds} s "
          f"(more fires than the worker can run: each job keeps one waiting run, later fires are skipped); one "
          f"worker (worker.py --queues {QUEUE}), one scheduler; SCHEDULER_INTERVAL {interval} s "
          f"(config.py, FIRETIME_SCHEDULER_INTERVAL), worker PAUSE_RECHECK {PAUSE_RECHECK:g} s; ready in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    wait_until(lambda: busy_now(flow_ids), 60, 0.1, "the flow of runs to start")
    time.sleep(options.poll_seconds * 2)
    cycles = []
    print(f"  {'cycle':>5} {'last start':>11} {'starts':>6} {'running':>7} {'refused':>7} {'passes':>6} "
          f"{'handing':>7} {'held':>4} {'skipped':>7} {'resume':>8} {'1st start':>9}")
    for n in range(1, options.cycles + 1):
        cycle = one_cycle(options, accounts, flow_ids, worker, scheduler, PAUSE_RECHECK)
        cycles.append(cycle)
        handed = (f"{cycle['handed']}/{cycle['handed_passes']}p" if cycle["handed"] else "0")
        print(f"  {n:>5} {ms(cycle['last_start']):>8} ms {len(cycle['late_starts']):>6} "
              f"{cycle['finished']}/{cycle['running']:<5} {cycle['refused']:>7} {cycle['passes']:>6} "
              f"{handed:>7} {cycle['held']:>4} {cycle['skipped_paused']:>7} "
              f"{cycle['released']:>3}/{cycle['held_at_resume']:<4} {ms(cycle['first_after_resume']):>6} ms",
              flush=True)
        time.sleep(options.poll_seconds * 2)
    intervals = pass_intervals(flow_ids)
    alive(worker, scheduler)
    worst_start = max(c["last_start"] for c in cycles)
    print(f"  last start: the latest run start minus the pause's commit (negative: before it); starts: runs "
          f"started after the commit; running: of the runs in progress at the commit, finished/all; refused: "
          f"claims the worker refused (the run went back to wait); passes: scheduler passes that fired in the "
          f"watch ({options.watch:g} s); handing: runs/passes after the commit that still handed a run to RQ; "
          f"held / skipped: fires after the commit kept waiting / recorded 'skipped: queue paused'; resume: runs "
          f"handed over/held; 1st start: from the resume's commit to the first start.")
    print(f"  Latest start against the pause's commit, worst of {len(cycles)}: {ms(worst_start)} ms; the scheduler's "
          f"firing passes {ms(percentile(intervals, 50))} ms apart (p50; max {ms(max(intervals, default=None))} ms, "
          f"{len(intervals)} gaps), SCHEDULER_INTERVAL {interval} s; first start after a resume "
          f"{ms(percentile([c['first_after_resume'] for c in cycles], 50))} ms (p50), "
          f"{ms(max(c['first_after_resume'] for c in cycles))} ms (max)")
    problems = []
    for n, cycle in enumerate(cycles, 1):
        if cycle["too_late"]:
            problems.append(f"cycle {n}: runs {cycle['too_late'][:10]} started later than the pause's commit + "
                            f"PAUSE_RECHECK")
        if cycle["finished"] != cycle["running"]:
            problems.append(f"cycle {n}: {cycle['running'] - cycle['finished']} runs in progress at the pause "
                            "did not finish as succeeded")
    return problems


# --- main ------------------------------------------------------------------------------------

PARTS = ("pages", "clear", "resume", "pause")


def bench(options, env):
    from webapp.extensions import db
    from webapp.models.types import utcnow

    parts = set(options.parts.split(","))
    print(f"Queues with {options.jobs:,} jobs, {options.waiting:,} waiting runs, {options.history:,} finished; "
          f"{env.database.kind} (driver {env.database.driver}); load average {load_average()}.", flush=True)
    accounts, jobs = seed(options, utcnow())
    problems = []
    if "pages" in parts:
        missed = bench_pages(env, options, accounts)
        problems += [f"page over the goal: {label}" for label in missed] if options.strict else []
    if "clear" in parts:
        _, found = bench_clear(options, accounts, f"2. Clear of {options.waiting:,} waiting runs")
        problems += found
    if "resume" in parts:
        if "clear" not in parts:
            bench_clear(options, accounts, "Clear first (not timed for the figures)")
        _, found = bench_resume(options, accounts, jobs)
        problems += found
        _, found = bench_clear(options, accounts, f"3b. Clear of the {options.jobs:,} resumed runs, all on RQ's list")
        problems += found
    if "pause" in parts:
        if "clear" not in parts and "resume" not in parts:
            bench_clear(options, accounts, "Clear first (not timed for the figures)")
        db.session.remove()
        problems += bench_pause(env, options, accounts, jobs)
    print(f"\nLoad average at the end {load_average()}.")
    if problems:
        raise BenchError("; ".join(problems))


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: 1,000 jobs and waiting runs, 10,000 finished, 10 requests, one cycle")
    parser.add_argument("--jobs", type=int, help="jobs, every one planned (default 10,000)")
    parser.add_argument("--waiting", type=int, help="waiting runs, half on RQ's list (default 10,000)")
    parser.add_argument("--history", type=int, help="finished runs (default 100,000)")
    parser.add_argument("--running", type=int, default=4, help="runs in progress (default 4)")
    parser.add_argument("--requests", type=int, help="timed requests a page, one per round (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (default 3)")
    parser.add_argument("--page-seconds", type=float, default=20,
                        help="stop the rounds once they took this long per page, after at least 5 (default 20)")
    parser.add_argument("--show-sql-ms", type=float, default=5, help="print slowest statements over this (ms)")
    parser.add_argument("--strict", action="store_true", help="exit 1 also when a page misses its goal")
    parser.add_argument("--flow-jobs", type=int, default=20, help="jobs that keep the queue busy (default 20)")
    parser.add_argument("--poll-seconds", type=int, default=2, help="their poll period (default 2)")
    parser.add_argument("--run-seconds", type=float, default=0.3, help="how long each of their runs takes (0.3)")
    parser.add_argument("--cycles", type=int, help="pause/resume cycles (default 5)")
    parser.add_argument("--watch", type=float, default=5, help="seconds watched after each pause (default 5)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which parts, of {','.join(PARTS)} (default all)")
    options = parser.parse_args(argv)
    for name, full, quick in (("jobs", 10_000, 1_000), ("waiting", 10_000, 1_000), ("history", 100_000, 10_000),
                              ("requests", 50, 10), ("cycles", 5, 1)):
        if getattr(options, name) is None:
            setattr(options, name, quick if options.quick else full)
    if not set(options.parts.split(",")) <= set(PARTS):
        parser.error(f"--parts takes some of {','.join(PARTS)}")
    handed = options.waiting // 2
    if options.jobs < handed + options.running or options.waiting < 2 or options.requests < 1 or options.cycles < 1:
        parser.error("need --jobs >= --waiting / 2 + --running, --waiting >= 2, --requests >= 1, --cycles >= 1")
    if options.history < 0 or options.flow_jobs < 2 or options.poll_seconds < 1:
        parser.error("need --history >= 0, --flow-jobs >= 2, --poll-seconds >= 1")
    return run_main(options, lambda env: bench(options, env), extra_env={"FIRETIME_TIMEZONE": TIMEZONE})


if __name__ == "__main__":
    sys.exit(main())
