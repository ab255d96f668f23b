"""Bulk data for the benchmarks, written fast: a few domains and users through the ORM, jobs with
one executemany, and runs and log lines with INSERT ... SELECT over a generated series (a
recursive CTE on SQLite, generate_series on PostgreSQL), 100,000 rows a statement.

Runs have explicit ids that follow their creation time: run i of a history of `total` runs was
created at end - (total - i) * step. So a benchmark can seed the newest runs first (ids
total-n+1 .. total), measure, then add the older history (ids 1 .. total-n) and measure again:
what a page shows of the latest runs stays the same, only the history under it grows.

Statuses, triggers and times come from the run's number by fixed arithmetic (no randomness, so two
runs of a benchmark see the same data): 82 % succeeded, 4 % with warnings, 6 % failed, 6.5 %
skipped, 1.5 % cancelled; every tenth run has three log lines. Queued and in-progress runs are
added separately (add_active_runs), a few, as a running installation has them.

Columns not written here but required by the schema get their model default, so a column added
to a model with a default does not break the seeding.
"""
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, func, insert, select, text

BATCH = 100_000
PASSWORD = "bench-pw"
BIG_PER_MILLE = 30  # the big job's share of the runs: 30,000 of 1,000,000


@dataclass
class Accounts:
    superadmin_id: int
    superadmin: str
    domain_admin_id: int
    domain_admin: str
    admin_domain_id: int  # the domain administrator's domain (it has sub-domains)
    domain_ids: list


@dataclass
class Jobs:
    first_id: int
    count: int

    @property
    def big_id(self) -> int:
        """The job that holds BIG_PER_MILLE of the runs."""
        return self.first_id

    @property
    def ids(self):
        return range(self.first_id, self.first_id + self.count)


def session():
    from webapp.extensions import db

    return db.session


def is_postgresql() -> bool:
    return session().get_bind().dialect.name == "postgresql"


# -- accounts and jobs ------------------------------------------------------------------------

def seed_accounts() -> Accounts:
    """Three top domains with three sub-domains each; a superadmin and the administrator of the
    first top domain (who sees its subtree: a third of the domain jobs)."""
    from webapp.models import Domain, Role, User

    s = session()
    tops = [Domain(name=f"Study {letter}") for letter in "ABC"]
    subs = [Domain(name=f"{top.name}{n}", parent=top) for top in tops for n in (1, 2, 3)]
    s.add_all(tops + subs)
    superadmin = User(username="bench-admin", role=Role.SUPERADMIN, email="admin@example.org")
    domain_admin = User(username="bench-domain-admin", role=Role.DOMAIN_ADMIN, domain=tops[0])
    for user in (superadmin, domain_admin):
        user.set_password(PASSWORD)
    s.add_all([superadmin, domain_admin])
    s.commit()
    return Accounts(superadmin.id, superadmin.username, domain_admin.id, domain_admin.username, tops[0].id,
                    [d.id for d in tops + subs])


def mixed_plan(k: int, anchor: datetime) -> dict:
    """Daily, interval and cron plans in turn, one job in twenty disabled; times spread over the day."""
    if k % 20 == 19:
        return {"kind": "disabled"}
    kind = k % 3
    if kind == 0:
        return {"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": [f"{(k // 3) % 24:02d}:{(k * 7) % 60:02d}"]}
    if kind == 1:
        return {"kind": "interval", "every": k % 12 + 1, "unit": "hours", "anchor": anchor.isoformat()}
    return {"kind": "cron", "expression": f"{k % 60} */{k % 6 + 1} * * *"}


NAMES = ("Nightly export", "Import", "Self-test", "Linkage", "Activity report")


def seed_jobs(count: int, accounts: Accounts, now: datetime, tz, plan_for=mixed_plan, prefix="") -> Jobs:
    """`count` self-test jobs with explicit ids; every tenth of installation scope, the others
    spread over the domains; the first one (the big job) in the domain administrator's domain.
    next_fire_at is computed from each plan, as saving the job would. `prefix` starts each name
    (names are unique: a second call needs one)."""
    from webapp.models import Job, JobState, Scope
    from webapp.scheduling.plans import parse_plan

    s = session()
    first = (s.scalar(select(func.max(Job.id))) or 0) + 1
    anchor = (now - timedelta(days=400)).replace(microsecond=0)
    rows = []
    next_fires = {}  # many jobs share a plan, and a cron plan takes a millisecond to compute
    for k in range(count):
        plan = plan_for(k, anchor)
        installation = k % 10 == 0 and k != 0
        domain_id = accounts.admin_domain_id if k == 0 else (
            None if installation else accounts.domain_ids[k % len(accounts.domain_ids)])
        key = json.dumps(plan, sort_keys=True)
        if key not in next_fires:
            next_fires[key] = parse_plan(plan).next_after(now, tz)
        next_fire = next_fires[key]
        rows.append({
            "id": first + k, "name": f"{prefix}{NAMES[k % len(NAMES)]} {k:05d}",
            "description": "Runs nightly after the backups." if k % 4 == 0 else "Bench job.",
            "job_type": "system.selftest", "scope": Scope.INSTALLATION if installation else Scope.DOMAIN,
            "domain_id": domain_id, "params": {"duration": 1, "lines_per_second": 2}, "plan": plan,
            "state": JobState.ACTIVE, "created_by_id": accounts.superadmin_id, "created_at": anchor,
            "updated_at": anchor, "next_fire_at": next_fire,
            "prev_fire_at": None if next_fire is None else now - timedelta(minutes=1 + k % 1440),
        })
    s.execute(insert(Job.__table__), rows)
    s.commit()
    fix_sequences()
    return Jobs(first, count)


# -- runs and log lines ---------------------------------------------------------------------------

@dataclass
class Timeline:
    """Run i (1..total) was created at end - (total - i) * step seconds."""

    total: int
    end: datetime
    step: int = 30

    @property
    def base(self) -> datetime:
        return self.end.replace(microsecond=0) - timedelta(seconds=self.total * self.step)

    def created_at(self, i: int) -> datetime:
        return self.base + timedelta(seconds=i * self.step)


def _timestamp(seconds_expr: str) -> str:
    """SQL for :base + seconds, in the form the app stores (naive UTC; microseconds on SQLite)."""
    if is_postgresql():
        return f"(CAST(:base AS timestamp) + ({seconds_expr}) * INTERVAL '1 second')"
    return f"(strftime('%Y-%m-%d %H:%M:%f', :base, '+' || ({seconds_expr}) || ' seconds') || '000')"


def _series() -> str:
    if is_postgresql():
        return "n(i) AS (SELECT generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)))"
    return "n(i) AS (SELECT CAST(:lo AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i < :hi)"


def _defaults(table, given) -> tuple[list, list, list]:
    """Columns the schema requires that `given` leaves out: their model defaults as bound values."""
    columns, exprs, params = [], [], []
    for column in table.columns:
        if (column.name in given or column.primary_key or column.nullable or column.server_default is not None):
            continue
        if column.default is None:
            raise RuntimeError(f"seeding: {table.name}.{column.name} is required and has no default")
        value = column.default.arg(None) if callable(column.default.arg) else column.default.arg
        columns.append(column.name)
        exprs.append(f":default_{column.name}")
        params.append(bindparam(f"default_{column.name}", value, type_=column.type))
    return columns, exprs, params


def _insert_select(table, values: dict, tail: str, prefix: str, binds: dict):
    """INSERT INTO table (values' keys + defaulted columns) <prefix> SELECT <values> <tail>."""
    columns, exprs, params = _defaults(table, values)
    quote = session().get_bind().dialect.identifier_preparer.quote
    sql = (f"{prefix} INSERT INTO {table.name} ({', '.join(quote(c) for c in [*values, *columns])}) "
           f"SELECT {', '.join([*values.values(), *exprs])} {tail}")
    statement = text(sql).bindparams(*params)
    return session().execute(statement, binds)


def insert_runs(lo: int, hi: int, timeline: Timeline, jobs: Jobs, accounts: Accounts, progress=None):
    """Runs lo..hi (inclusive) of the timeline, BATCH rows a statement, each batch committed."""
    from webapp.models import Run

    others = jobs.count - 1
    status = ("CASE WHEN (i * 37) % 1000 < 820 THEN 'succeeded' WHEN (i * 37) % 1000 < 860 "
              "THEN 'succeeded_with_warnings' WHEN (i * 37) % 1000 < 920 THEN 'failed' "
              "WHEN (i * 37) % 1000 < 985 THEN 'skipped' ELSE 'cancelled' END")
    trigger = "CASE WHEN (i * 11) % 100 < 80 THEN 'plan' WHEN (i * 11) % 100 < 95 THEN 'hand' ELSE 'api' END"
    job = (f"CASE WHEN i % 1000 < {BIG_PER_MILLE} OR {others} = 0 THEN {jobs.big_id} "
           f"ELSE {jobs.first_id + 1} + (i * 7919) % {max(others, 1)} END")
    created = _timestamp(f"i * {timeline.step}")
    values = {
        "id": "i", "job_id": "job", "trigger": "tr", "status": "st",
        "requested_by_id": f"CASE WHEN tr = 'plan' THEN NULL ELSE {accounts.superadmin_id} END",
        "occurrence_at": f"CASE WHEN tr = 'plan' THEN {created} END",
        "created_at": created,
        "enqueued_at": f"CASE WHEN st = 'skipped' THEN NULL ELSE {created} END",
        "started_at": f"CASE WHEN st IN ('skipped', 'cancelled') THEN NULL ELSE {_timestamp(f'i * {timeline.step} + 1')} END",
        "finished_at": _timestamp(f"i * {timeline.step} + 1 + i % 97"),
        "progress": "CASE WHEN st IN ('succeeded', 'succeeded_with_warnings') THEN 100 ELSE i % 100 END",
        "progress_message": "CASE WHEN st IN ('succeeded', 'succeeded_with_warnings') THEN 'done' ELSE '' END",
        "warning_count": "CASE WHEN st = 'succeeded_with_warnings' THEN 1 + i % 5 ELSE 0 END",
        "error_count": "CASE WHEN st = 'failed' THEN 1 ELSE 0 END",
        "line_count": "CASE WHEN i % 10 = 0 THEN 3 ELSE 0 END",
        "message": ("CASE WHEN st = 'failed' THEN 'SelfTestFailure: The self-test was asked to fail at the end.' "
                    "WHEN st = 'skipped' THEN 'Skipped: a run of this job was still in progress.' "
                    "WHEN st = 'cancelled' THEN 'Cancelled by bench-admin.' ELSE '' END"),
        "worker_name": "CASE WHEN st IN ('skipped', 'cancelled') THEN NULL ELSE 'bench-worker' END",
    }
    prefix = f"WITH RECURSIVE {_series()}, s AS (SELECT i, {status} AS st, {trigger} AS tr, {job} AS job FROM n)"
    base = timeline.base.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    for start in range(lo, hi + 1, BATCH):
        end = min(hi, start + BATCH - 1)
        _insert_select(Run.__table__, values, "FROM s", prefix, {"lo": start, "hi": end, "base": base})
        insert_log_lines(start, end)
        session().commit()
        if progress:
            progress(end - lo + 1)
    fix_sequences()
    note_latest_runs()


def note_latest_runs():
    """jobs.last_run_id and last_status, which the engine keeps as it writes runs, for runs
    inserted here by SQL: the same statements as the migration that added them."""
    from sqlalchemy import text

    s = session()
    s.execute(text("UPDATE jobs SET last_run_id = (SELECT runs.id FROM runs WHERE runs.job_id = jobs.id "
                   "AND runs.status != 'skipped' ORDER BY runs.id DESC LIMIT 1)"))
    s.execute(text("UPDATE jobs SET last_status = (SELECT runs.status FROM runs WHERE runs.id = jobs.last_run_id)"))
    s.commit()


def every_few_seconds(what, seconds=15):
    """A progress callback for insert_runs that prints at most every few seconds."""
    last = [time.monotonic()]

    def progress(done):
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            print(f"  ... {done:,} {what}", flush=True)

    return progress


def insert_log_lines(lo: int, hi: int):
    """Three lines for every tenth run between lo and hi (its line_count says 3)."""
    from webapp.models import RunLogLine

    values = {"run_id": "r.id", "seq": "k.seq", "at": "r.created_at", "level": "'info'",
              "message": "'Self-test line ' || k.seq || ' of run ' || r.id || '.'"}
    tail = ("FROM runs r CROSS JOIN (SELECT 1 AS seq UNION ALL SELECT 2 UNION ALL SELECT 3) k "
            "WHERE r.id BETWEEN :lo AND :hi AND r.id % 10 = 0")
    _insert_select(RunLogLine.__table__, values, tail, "", {"lo": lo, "hi": hi})


def give_run_lines(run_id: int, count: int):
    """Make one finished run carry `count` log lines (a typical run page)."""
    from sqlalchemy import delete, update

    from webapp.models import Run, RunLogLine

    s = session()
    at = s.scalar(select(Run.created_at).where(Run.id == run_id))
    s.execute(delete(RunLogLine).where(RunLogLine.run_id == run_id))
    s.execute(insert(RunLogLine.__table__), [
        {"run_id": run_id, "seq": n, "at": at + timedelta(milliseconds=250 * n),
         "level": "warning" if n % 25 == 0 else "info", "message": f"Self-test line {n} at {n / 4:.1f} s."}
        for n in range(1, count + 1)])
    s.execute(update(Run).where(Run.id == run_id).values(line_count=count))
    s.commit()


def add_active_runs(job_ids, now: datetime, accounts: Accounts) -> dict:
    """For each job: one run in progress (started a minute ago) and one run asked for by hand that
    waits behind it in the database, as a busy installation has them. Returns {"in_progress": ids,
    "waiting": ids}."""
    from webapp.models import Run, RunStatus, Trigger

    s = session()
    started = now - timedelta(minutes=1)
    rows = []
    for job_id in job_ids:
        rows.append({"job_id": job_id, "trigger": Trigger.PLAN, "status": RunStatus.IN_PROGRESS,
                     "occurrence_at": started.replace(microsecond=0), "created_at": started,
                     "enqueued_at": started, "started_at": started, "worker_name": "bench-worker",
                     "progress": 40, "progress_message": "working"})
        rows.append({"job_id": job_id, "trigger": Trigger.HAND, "status": RunStatus.QUEUED,
                     "requested_by_id": accounts.superadmin_id, "created_at": now})
    for kind in (Trigger.PLAN, Trigger.HAND):  # executemany wants rows with the same keys
        s.execute(insert(Run.__table__), [row for row in rows if row["trigger"] == kind])
    s.commit()
    note_latest_runs()
    active = s.execute(select(Run.id, Run.status).where(Run.job_id.in_(list(job_ids)),
                                                        Run.status.in_([RunStatus.IN_PROGRESS, RunStatus.QUEUED])))
    found = {"in_progress": [], "waiting": []}
    for run_id, status in active:
        found["in_progress" if status == RunStatus.IN_PROGRESS else "waiting"].append(run_id)
    return found


ACTIVE_KINDS = {  # kind -> (status, handed to RQ, started)
    "handed": ("queued", True, False),
    "held": ("queued", False, False),
    "running": ("in_progress", True, True),
}


def insert_active_runs(first_job_id: int, count: int, at: datetime, kind: str, accounts: Accounts):
    """One run asked for by hand for each of `count` jobs from first_job_id on, in one
    INSERT … SELECT: "handed" (queued and handed to RQ: the caller puts the RQ jobs on the list),
    "held" (queued, waiting in the database) or "running" (in progress on bench-worker). Created
    a second apart, the last at `at`; ids follow the jobs' order. Then note_latest_runs()."""
    from webapp.models import Run

    status, handed, started = ACTIVE_KINDS[kind]
    created = _timestamp("i")
    values = {
        "job_id": f"{first_job_id - 1} + i", "trigger": "'hand'", "status": f"'{status}'",
        "requested_by_id": str(accounts.superadmin_id), "created_at": created,
        "enqueued_at": created if handed else "NULL", "started_at": created if started else "NULL",
        "worker_name": "'bench-worker'" if started else "NULL", "progress": "40" if started else "0",
        "progress_message": "'working'" if started else "''",
    }
    base = (at - timedelta(seconds=count)).astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    _insert_select(Run.__table__, values, "FROM n", f"WITH RECURSIVE {_series()}",
                   {"lo": 1, "hi": count, "base": base})
    session().commit()
    note_latest_runs()


def fix_sequences():
    """PostgreSQL: explicit ids leave the id sequences behind; move them past the highest id."""
    if not is_postgresql():
        return
    s = session()
    for table in ("jobs", "runs"):
        s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                       f"COALESCE((SELECT max(id) FROM {table}), 1))"))
    s.commit()


def settle_statistics():
    """After a bulk load, the state a database soon reaches by itself. PostgreSQL: VACUUM ANALYZE
    the loaded tables, as autovacuum would (else the planner guesses from an empty table).
    SQLite: fold the write-ahead log back into the database file (a checkpoint; readers never
    let the load's own checkpoints finish), and no ANALYZE, as the app never runs it there.
    Returns what was done, for the printout."""
    s = session()
    s.commit()
    if not is_postgresql():
        s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        s.commit()
        return "WAL checkpointed, no ANALYZE (SQLite, as in production)"
    with s.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("jobs", "runs", "run_log_lines"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
    return "VACUUM ANALYZE after seeding (PostgreSQL)"
