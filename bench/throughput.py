"""Throughput of no-op work: plain RQ jobs against Firetime runs, with the same forking worker.

    .venv/bin/python bench/throughput.py                       # 500 jobs, 3 rounds, SQLite
    .venv/bin/python bench/throughput.py --jobs 300 --rounds 5
    .venv/bin/python bench/throughput.py --database-url postgresql://postgres@127.0.0.1:5432/test

Each round drains N jobs twice, in alternating order (plain first in odd rounds, Firetime
first in even ones), every time with a fresh worker process in burst mode:

  plain RQ   N calls of bench.noop.noop, queued with enqueue_many in one pipeline, drained by
             a small `rq.Worker(queues, connection).work(burst=True)` process;
  Firetime   N self-test jobs (duration 0: two log lines) with one run each, queued through
             webapp.execution.dispatch.request_run, drained by `python worker.py --burst`
             (FiretimeWorker, a subclass of rq.Worker, on all Firetime queues).
             One job per run, because runs of one job never overlap and would wait in the DB.

Both sides are timed the same two ways and both are printed:
  wall   worker process start (just before Popen) to process exit: includes the interpreter
         start and the imports (rq alone for plain, the Flask app for Firetime);
  drain  first job's started_at to last job's ended_at, read from RQ's own job hashes:
         excludes start-up and exit, so it is the steady per-job cost.
  cpu    user + system CPU time of the worker process and its work horses, less that of an empty
         burst of the same worker, per job: it moves less with the machine's load than the
         times do (it leaves out the Redis and database servers, and waiting).
Queuing is not timed. Everything runs against a private redis-server on a free port and a
database made for the run (SQLite in a temp dir, or a fresh PostgreSQL database created on the
server given by --database-url and dropped at the end), migrated with flask_migrate.upgrade.
An untimed empty burst of each worker comes first; workers keep byte code in a cache in the temp
dir (PYTHONPYCACHEPREFIX), so start-up is not inflated where PYTHONDONTWRITEBYTECODE is set.
After each Firetime round every run must be SUCCEEDED with its log lines in run_log_lines, or the
script stops with status 1. Worker logs go to files (see --log-dir), not to the terminal.

    .venv/bin/python bench/throughput.py --baseline /tmp/firetime-before

--baseline DIR adds a third side to every round: the Firetime worker of another checkout of the
project (for instance `git archive <commit> | tar -x -C DIR`; it must use the same database schema),
run the same way with DIR as its working directory. The three sides take turns going first, so
that a change is measured against what it replaced under the same load.
"""
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, BenchError, load_average, new_parser, process_env, run_main, tail  # noqa: E402

NOOP = "bench.noop.noop"
# The plain RQ worker: the same forking rq.Worker that FiretimeWorker extends, with logging set
# up as worker.py does (root handler at INFO, work(logging_level="INFO")), on the same queues.
PLAIN_WORKER = """\
import logging, sys
import redis
from rq import Worker
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
conn = redis.Redis.from_url(sys.argv[1], health_check_interval=30, socket_connect_timeout=5)
Worker(sys.argv[2].split(","), connection=conn).work(burst=True, logging_level="INFO")
"""


class Bench:
    def __init__(self, options, tmp, logdir, redis_server):
        from webapp.extensions import redis_client
        from webapp.jobtypes.registry import queue_names

        self.options = options
        self.tmp = tmp
        self.logdir = logdir
        self.redis_url = redis_server.url
        self.conn = redis_client.conn
        self.queues = queue_names()
        self.timeout = 120 + options.jobs  # seconds: far beyond 1 job/s
        # Workers may keep byte code (in a cache of our own, not in the source tree): both sides then
        # start as a deployed worker would, even where PYTHONDONTWRITEBYTECODE is set.
        self.worker_env = process_env(tmp)
        self.idle_cpu = {}  # side -> CPU seconds of an empty burst of its worker

    # -- the two sides -------------------------------------------------------------------------
    def plain_round(self, label):
        from rq import Queue

        n = self.options.jobs
        self.conn.flushdb()
        queue = Queue(self.queues[0], connection=self.conn)
        with self.conn.pipeline() as pipe:
            jobs = queue.enqueue_many(
                [Queue.prepare_data(NOOP, args=(i,), timeout=6 * 3600, result_ttl=600, failure_ttl=7 * 86400,
                                    description=f"noop {i}") for i in range(n)],
                pipeline=pipe)
            pipe.execute()
        ids = [job.id for job in jobs]
        if queue.count != n:
            raise BenchError(f"plain RQ: {queue.count} jobs queued, expected {n}")
        argv = [sys.executable, "-c", PLAIN_WORKER, self.redis_url, ",".join(self.queues)]
        timing = self._time_worker(argv, ids, self.logdir / f"{label}-plain.log", side="plain")
        self._check_rq_finished(ids, "plain RQ", timing["log"])
        return timing

    def firetime_round(self, label, root=ROOT, side="firetime"):
        from sqlalchemy import delete, func, select

        from webapp.execution.dispatch import request_run
        from webapp.extensions import db
        from webapp.models import AuditEvent, Job, Run, RunLogLine, RunStatus, Scope

        n = self.options.jobs
        self.conn.flushdb()
        # One self-test job per run: runs of one job never overlap, they would wait in the DB.
        jobs = [Job(name=f"bench {label} {side} #{i}", job_type="system.selftest", scope=Scope.INSTALLATION,
                    plan={"kind": "disabled"}, params={"duration": 0, "lines_per_second": 0})
                for i in range(n)]
        db.session.add_all(jobs)
        db.session.commit()
        runs = [request_run(job) for job in jobs]  # creates the Run and enqueues its RQ job
        run_ids = [run.id for run in runs]
        rq_ids = [run.rq_job_id for run in runs]
        job_ids = [job.id for job in jobs]
        db.session.remove()  # the worker must not find us in a transaction
        queued = sum(self._queue_count(q) for q in self.queues)
        if queued != n:
            raise BenchError(f"Firetime: {queued} RQ jobs queued, expected {n}")

        argv = [sys.executable, str(root / "worker.py"), "--burst"]
        timing = self._time_worker(argv, rq_ids, self.logdir / f"{label}-{side}.log", cwd=root, side=side)
        self._check_rq_finished(rq_ids, side, timing["log"])

        # Every run must have succeeded and have its log lines in run_log_lines.
        statuses = dict(db.session.execute(
            select(Run.status, func.count()).where(Run.id.in_(run_ids)).group_by(Run.status)).all())
        if statuses != {RunStatus.SUCCEEDED: n}:
            bad = db.session.execute(select(Run.id, Run.status, Run.message).where(
                Run.id.in_(run_ids), Run.status != RunStatus.SUCCEEDED).limit(5)).all()
            raise BenchError(f"{side} runs not all succeeded: {statuses}; e.g. {bad}\n"
                             f"worker log {timing['log']}:\n{tail(timing['log'])}")
        per_run = dict(db.session.execute(
            select(RunLogLine.run_id, func.count()).where(RunLogLine.run_id.in_(run_ids))
            .group_by(RunLogLine.run_id)).all())
        expected = dict(db.session.execute(select(Run.id, Run.line_count).where(Run.id.in_(run_ids))).all())
        missing = [rid for rid in run_ids if per_run.get(rid, 0) < 2 or per_run.get(rid) != expected[rid]]
        if missing:
            raise BenchError(f"{side}: {len(missing)} runs lack their log lines in run_log_lines, "
                             f"e.g. run {missing[0]}: {per_run.get(missing[0], 0)} rows, "
                             f"line_count {expected[missing[0]]}")

        # Start every round from an empty runs table, so rounds stay alike (not timed). If some
        # newer table refers to these rows, keep them: the next round only has more rows around.
        try:
            db.session.execute(delete(RunLogLine).where(RunLogLine.run_id.in_(run_ids)))
            db.session.execute(delete(AuditEvent).where(AuditEvent.object_id.in_(job_ids),
                                                        AuditEvent.object_type == "job"))
            db.session.execute(delete(Run).where(Run.id.in_(run_ids)))
            db.session.execute(delete(Job).where(Job.id.in_(job_ids)))
            db.session.commit()
        except Exception:
            db.session.rollback()
            logging.getLogger(__name__).warning("could not delete the rows of %s", label, exc_info=True)
        db.session.remove()
        return timing

    # -- shared ----------------------------------------------------------------------------------
    def _queue_count(self, name):
        from rq import Queue

        return Queue(name, connection=self.conn).count

    def _time_worker(self, argv, rq_ids, log_path, cwd=ROOT, side="firetime"):
        """Run one burst worker; wall = process start to exit, drain = from RQ's timestamps, cpu = the
        CPU time of the worker and its work horses beyond that of an empty burst of the same worker."""
        from rq.job import Job as RQJob

        cpu0 = children_cpu()
        with open(log_path, "wb") as log:
            t0_wall = time.time()
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=self.worker_env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise BenchError(f"worker still running after {self.timeout} s; log {log_path}:\n"
                                 f"{tail(log_path)}") from None
            except BaseException:  # Ctrl-C, SIGTERM: the worker is in its own session, end it too
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            wall = time.perf_counter() - t0
        cpu = children_cpu() - cpu0
        if code != 0:
            raise BenchError(f"worker exited with status {code}; log {log_path}:\n{tail(log_path)}")
        jobs = [job for job in RQJob.fetch_many(rq_ids, connection=self.conn) if job is not None]
        if len(jobs) != len(rq_ids) or any(job.started_at is None or job.ended_at is None for job in jobs):
            raise BenchError(f"{len(rq_ids) - len(jobs)} RQ jobs gone or without timestamps; log {log_path}")
        first = min(job.started_at for job in jobs).astimezone(UTC).timestamp()
        last = max(job.ended_at for job in jobs).astimezone(UTC).timestamp()
        return {"wall": wall, "startup": first - t0_wall, "drain": last - first, "jobs": len(rq_ids),
                "cpu": max(cpu - self.idle_cpu.get(side, 0.0), 0.0), "log": log_path}

    def _check_rq_finished(self, rq_ids, side, log_path):
        statuses = self._rq_statuses(rq_ids)
        if statuses != {"finished"}:
            raise BenchError(f"{side}: RQ job statuses {statuses}, expected all finished; log {log_path}:\n"
                             f"{tail(log_path)}")
        left = sum(self._queue_count(q) for q in self.queues)
        if left:
            raise BenchError(f"{side}: {left} jobs still queued after the burst worker exited")

    def _rq_statuses(self, rq_ids):
        from rq.job import Job as RQJob

        return {getattr(status, "value", status) if job else "missing"
                for job in RQJob.fetch_many(rq_ids, connection=self.conn)
                for status in [job.get_status(refresh=False) if job else None]}

    def warm_up(self):
        """Two empty bursts of each worker: byte-code caches and page cache are warm, and the CPU
        time of the second is what a worker costs with no job (subtracted from its rounds' cpu)."""
        self.conn.flushdb()
        workers = [([sys.executable, "-c", PLAIN_WORKER, self.redis_url, ",".join(self.queues)], "plain", ROOT),
                   ([sys.executable, str(ROOT / "worker.py"), "--burst"], "firetime", ROOT)]
        if self.options.baseline:
            root = Path(self.options.baseline)
            workers.append(([sys.executable, str(root / "worker.py"), "--burst"], "baseline", root))
        for argv, name, cwd in workers:
            path = self.logdir / f"warmup-{name}.log"
            for _ in range(2):
                cpu0 = children_cpu()
                with open(path, "wb") as log:
                    code = subprocess.call(argv, cwd=cwd, env=self.worker_env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, timeout=120)
                if code != 0:
                    raise BenchError(f"{name} worker does not start (status {code}); log {path}:\n{tail(path)}")
                self.idle_cpu[name] = children_cpu() - cpu0


def children_cpu() -> float:
    """User and system CPU seconds of this process's ended children and their ended children (a
    burst worker and the work horses it waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rate(timing, key):
    return timing["jobs"] / timing[key] if timing[key] > 0 else float("inf")


HEADER = (f"{'round':>5}  {'side':<9} {'jobs':>5}  {'wall s':>7}  {'start s':>7}  {'drain s':>7}"
          f"  {'/s wall':>8}  {'/s drain':>8}  {'ms/job':>7}  {'cpu ms':>7}  {'load':>5}")


def print_row(round_no, side, t):
    print(f"{round_no:>5}  {side:<9} {t['jobs']:>5}  {t['wall']:7.2f}  {t['startup']:7.2f}  {t['drain']:7.2f}"
          f"  {rate(t, 'wall'):8.1f}  {rate(t, 'drain'):8.1f}  {1000 * t['drain'] / t['jobs']:7.1f}"
          f"  {1000 * t['cpu'] / t['jobs']:7.1f}  {one_minute_load():>5}", flush=True)


def one_minute_load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def summary(results, key, options, db_kind, how, side="firetime"):
    plain = statistics.median(rate(r["plain"], key) for r in results)
    fire = statistics.median(rate(r[side], key) for r in results)
    ratio = statistics.median(rate(r[side], key) / rate(r["plain"], key) for r in results)
    return (f"plain RQ {plain:.1f} jobs/s, {SIDES[side]} {fire:.1f} jobs/s, ratio {ratio:.2f} "
            f"(median of {len(results)} rounds, {options.jobs} jobs, {db_kind}; {how})")


SIDES = {"plain": "plain RQ", "firetime": "Firetime", "baseline": "baseline"}


def round_order(round_no, sides):
    """Who goes first takes turns: plain first in odd rounds with two sides; with three, each
    side in turn."""
    if len(sides) == 2:
        return sides if round_no % 2 else sides[::-1]
    shift = (round_no - 1) % len(sides)
    return sides[shift:] + sides[:shift]


def run(options, env):
    bench = Bench(options, env.tmp, env.logdir, env.redis)
    bench.warm_up()
    print(f"Throughput of no-op jobs: {options.jobs} jobs per side, {options.rounds} rounds, {env.database.kind}"
          f" (driver {env.database.driver}), one forking worker process in burst mode per side and round, "
          f"{os.cpu_count()} CPUs, "
          f"load average {load_average()}.")
    print("wall = worker process start to exit (imports included); start = process start to first job start;\n"
          "drain = first job start to last job end (RQ timestamps, imports excluded); ms/job = drain / jobs;\n"
          "cpu ms = CPU time of the worker and its work horses per job, less that of an empty burst;\n"
          "load = the machine's one-minute load average as the side ended.")
    print(HEADER, flush=True)
    results = []
    sides = ["plain", "firetime"] + (["baseline"] if options.baseline else [])
    for round_no in range(1, options.rounds + 1):
        result = {}
        for side in round_order(round_no, sides):
            label = f"round{round_no}"
            if side == "plain":
                result[side] = bench.plain_round(label)
            elif side == "baseline":
                result[side] = bench.firetime_round(label, Path(options.baseline), side)
            else:
                result[side] = bench.firetime_round(label)
            print_row(round_no, SIDES[side], result[side])
        results.append(result)
    print()
    for side in sides[1:]:
        print(summary(results, "wall", options, env.database.kind, "worker process start to exit, imports included",
                      side))
        print(summary(results, "drain", options, env.database.kind, "first job start to last job end, "
                                                                     "imports excluded", side))
    print("CPU per job, worker and work horses beyond an empty burst (median): " + ", ".join(
        f"{SIDES[side]} {statistics.median(1000 * r[side]['cpu'] / r[side]['jobs'] for r in results):.1f} ms"
        for side in sides))
    print(f"Every Firetime run succeeded with its log lines in run_log_lines. Load average now "
          f"{load_average()}.")
    if options.log_dir:
        print(f"Worker logs: {env.logdir}")


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per side and round (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each plain + Firetime (default 3)")
    parser.add_argument("--baseline", metavar="DIR", help="also run, in every round, the Firetime worker of the "
                                                           "checkout in DIR (same database schema)")
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.rounds < 1:
        parser.error("--jobs and --rounds must be at least 1")
    if options.baseline:
        options.baseline = str(Path(options.baseline).resolve())
        if not (Path(options.baseline) / "worker.py").is_file():
            parser.error(f"--baseline: no worker.py in {options.baseline}")
    return run_main(options, lambda env: run(options, env))


if __name__ == "__main__":
    sys.exit(main())
