"""Response times of the console's pages and API calls as the run history grows from 10,000 to
1,000,000 runs, with 10,000 jobs.

    .venv/bin/python bench/pages.py                        # 10k, then 1M runs; SQLite
    .venv/bin/python bench/pages.py --runs 200000          # a quicker second phase
    .venv/bin/python bench/pages.py --database-url postgresql://postgres@127.0.0.1:5432/test

Seeds (in bulk, see bench/seeding.py) 12 domains, a superadmin and a domain administrator, 10,000
self-test jobs with plans, and the newest 10,000 runs of a history (3 % of them, and so 30,000 of
1,000,000, belong to one "big" job; every tenth run has three log lines; a few runs are queued or
in progress; one failed run of the big job gets 100,000 log lines for the log popup). Measures
every page of the console (jobs list with filters and type views, job page and each tab, run
page, log popup, dashboard, executions, audit) and the API, signed in as a superadmin and as a
domain administrator, then adds the older history up to --runs and measures again.

Each page is requested through Flask's test client of the app (in this process, no network:
the figures are the app's own time, routing, queries and templates included) signed in with the
CSRF-checked sign-in form, and each API call with an API token (Authorization: Bearer). A paged
API list is also timed at its second page (the cursor of its first). Every page gets --warmup
untimed requests, then --requests rounds time one request of each page in turn, so that a change
in the machine's load falls on all pages alike. Every answer must be 200. Printed per page and
phase: p50 and p95 in ms, SQL statements per request, size; then the growth phase 2 / phase 1,
and the slowest statement each page ran. /healthz reads no runs: its growth is the machine's drift.
"""
import contextvars
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BenchError, SqlTimer, load_average, ms, new_parser, one_line, percentile,  # noqa: E402
                    run_main)
import seeding  # noqa: E402

TIMEZONE = "Europe/Amsterdam"
JOB_TABS = ("information", "scheduling", "executions", "audit", "charts")


class Pages:
    """The pages to time, with the clients that are signed in for them."""

    def __init__(self, app, accounts, jobs, big_run_id, huge_run_id, timeline):
        from webapp.extensions import db
        from webapp.models import ApiToken, User

        self.app = app
        self.tokens = {}
        self.clients = {}
        for label, user_id in (("admin", accounts.superadmin_id), ("domain", accounts.domain_admin_id)):
            user = db.session.get(User, user_id)
            _, self.tokens[label] = ApiToken.issue(user)
            db.session.commit()
            self.clients[label] = self._signed_in(user.username)
        self.anonymous = app.test_client()
        big = jobs.big_id
        self.list = [
            ("jobs list, first page", "admin", "/jobs/"),
            ("jobs list, sorted by next fire, page 5", "admin", "/jobs/?sort=next&dir=desc&page=5"),
            ("jobs list, find 'nightly'", "admin", "/jobs/?q=nightly"),
            ("jobs list, domain administrator", "domain", "/jobs/"),
            ("jobs list, failed, sorted by status", "admin", "/jobs/?status=failed&sort=status"),
            ("jobs list, self-test view, page 50", "admin", "/jobs/?type=system.selftest&page=50"),
            ("job page of the big job", "admin", f"/jobs/{big}"),
            ("job page of the big job, failed runs", "admin", f"/jobs/{big}?status=failed"),
            *[(f"job page of the big job, {tab} tab", "admin", f"/jobs/{big}?tab={tab}") for tab in JOB_TABS],
            ("run page (100 log lines)", "admin", f"/runs/{big_run_id}"),
            ("log popup (100,000 log lines)", "htmx:admin", f"/runs/{huge_run_id}/popup"),
            ("log popup (100,000 log lines), domain administrator", "htmx:domain", f"/runs/{huge_run_id}/popup"),
            ("dashboard", "admin", "/dashboard/"),
            ("dashboard, domain administrator", "domain", "/dashboard/"),
            ("executions", "admin", "/executions/"),
            ("executions, failed", "admin", "/executions/?status=failed"),
            ("executions, domain administrator", "domain", "/executions/"),
            ("audit", "admin", "/audit/"),
            ("audit, domain administrator", "domain", "/audit/"),
            ("API scheduled-jobs", "api:admin", "/api/scheduled-jobs"),
            ("API scheduled-jobs, domain administrator", "api:domain", "/api/scheduled-jobs"),
            ("API runs of the big job, last 7 days", "api:admin", None),
            ("API runs of the big job, whole history", "api:admin",
             f"/api/scheduled-jobs/{big}/runs?fromDate={local(timeline.base):%Y%m%d}"),
            ("healthz", "anonymous", "/healthz"),
        ]
        self.big = big

    def _signed_in(self, username):
        from tests.factories import csrf_from

        client = self.app.test_client()
        page = self.call(client.get, "/login")
        response = self.call(client.post, "/login", data={"username": username, "password": seeding.PASSWORD,
                                                          "csrf_token": csrf_from(page)})
        if response.status_code != 302:
            raise BenchError(f"sign-in of {username} failed: {response.status_code}")
        return client

    @staticmethod
    def call(method, *args, **kwargs):
        # In a context of its own, so each request pushes and tears down its own app context (and
        # database session) as in a server, instead of sharing the bench's.
        return contextvars.Context().run(method, *args, **kwargs)

    def request(self, who, path):
        if who.startswith("api:"):
            client = self.clients[who[4:]]
            return self.call(client.get, path, headers={"Authorization": f"Bearer {self.tokens[who[4:]]}"})
        if who.startswith("htmx:"):  # a fragment, as HTMX asks for it (the popup)
            return self.call(self.clients[who[5:]].get, path, headers={"HX-Request": "true"})
        client = self.anonymous if who == "anonymous" else self.clients[who]
        return self.call(client.get, path)

    def paths(self, newest_created):
        """The list with the last-7-days API path filled in for the history as it is now, and after
        each paged API list its second page, by the cursor its first page gives (X-Next-Cursor)."""
        since = local(newest_created - timedelta(days=7))
        recent = f"/api/scheduled-jobs/{self.big}/runs?fromDate={since:%Y%m%dT%H%M%S}"
        paths = []
        for label, who, path in self.list:
            paths.append((label, who, path or recent))
            cursor = self.request(who, path or recent).headers.get("X-Next-Cursor") if who.startswith("api:") else None
            if cursor:
                joiner = "&" if "?" in (path or recent) else "?"
                paths.append((f"{label}, page 2", who, f"{path or recent}{joiner}after={quote(cursor)}"))
        return paths


def local(moment):
    return moment.astimezone(ZoneInfo(TIMEZONE))


def measure_all(pages, paths, options, engine, phase):
    """--warmup untimed requests of each page, then rounds of one timed request of each page, so
    that a change in the machine's load falls on every page alike; at most --requests rounds, and
    no more once --page-seconds per page are used up (with at least 5 rounds)."""
    print(f"\n{phase}  (load average {load_average()})", flush=True)
    for label, who, path in paths:
        for _ in range(options.warmup):
            check(pages.request(who, path), label, path)
    results = {label: {"times": [], "queries": [], "slowest": (0.0, ""), "bytes": 0} for label, _, _ in paths}
    began = time.perf_counter()
    with SqlTimer(engine) as timer:
        for round_no in range(1, options.requests + 1):
            for label, who, path in paths:
                result = results[label]
                timer.take()
                started = time.perf_counter()
                response = pages.request(who, path)
                result["times"].append(time.perf_counter() - started)
                check(response, label, path)
                result["bytes"] = len(response.get_data())
                statements = timer.take()
                result["queries"].append(len(statements))
                result["slowest"] = max([result["slowest"], *statements], key=lambda s: s[0])
            if round_no >= 5 and time.perf_counter() - began > options.page_seconds * len(paths):
                break
    print(f"  {'page':<52} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} {'queries':>7} {'KB':>7}")
    for label, _, _ in paths:
        result = results[label]
        result.update(n=len(result["times"]), p50=percentile(result["times"], 50),
                      p95=percentile(result["times"], 95), queries=percentile(result["queries"], 50))
        print(f"  {label:<52} {result['n']:>3} {ms(result['p50']):>8} {ms(result['p95']):>8} "
              f"{result['queries']:>7.0f} {result['bytes'] / 1024:>7.1f}")
    return results


def check(response, label, path):
    if response.status_code != 200:
        raise BenchError(f"{label}: GET {path} answered {response.status_code}:\n"
                         f"{response.get_data(as_text=True)[:500]}")


def run_counts(big_id):
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Run

    total = db.session.scalar(select(func.count(Run.id)))
    big = db.session.scalar(select(func.count(Run.id)).where(Run.job_id == big_id))
    db.session.commit()
    return total, big


def bench(options, env):
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Run
    from webapp.models.types import utcnow

    engine = db.engine
    now = utcnow()
    print(f"Pages and API with {options.jobs:,} jobs, runs {options.small_runs:,} then {options.runs:,}; "
          f"{env.database.kind} (driver {env.database.driver}), {options.requests} timed requests a page after "
          f"{options.warmup} untimed, test client in process; time zone {TIMEZONE}.", flush=True)
    started = time.perf_counter()
    accounts = seeding.seed_accounts()
    jobs = seeding.seed_jobs(options.jobs, accounts, now, ZoneInfo(TIMEZONE))
    timeline = seeding.Timeline(options.runs, now - timedelta(minutes=5))
    seeding.insert_runs(options.runs - options.small_runs + 1, options.runs, timeline, jobs, accounts)
    active = seeding.add_active_runs(list(jobs.ids)[1:21], now, accounts)
    big_run_id = db.session.scalar(select(func.max(Run.id)).where(Run.job_id == jobs.big_id,
                                                                  Run.status == "succeeded"))
    seeding.give_run_lines(big_run_id, 100)
    huge_run_id = db.session.scalar(select(func.max(Run.id)).where(Run.job_id == jobs.big_id,
                                                                   Run.status == "failed"))
    seeding.give_run_lines(huge_run_id, 100_000)
    statistics = seeding.settle_statistics()
    total, big = run_counts(jobs.big_id)
    print(f"Seeded {options.jobs:,} jobs and {total:,} runs ({big:,} of the big job #{jobs.big_id}, "
          f"{len(active['in_progress'])} in progress, {len(active['waiting'])} waiting) in "
          f"{time.perf_counter() - started:.1f} s; {statistics}.", flush=True)

    pages = Pages(env.app, accounts, jobs, big_run_id, huge_run_id, timeline)
    paths = pages.paths(timeline.created_at(options.runs))
    small = measure_all(pages, paths, options, engine, f"Phase 1: {total:,} runs, {big:,} of the big job")

    started = time.perf_counter()
    seeding.insert_runs(1, options.runs - options.small_runs, timeline, jobs, accounts,
                        progress=seeding.every_few_seconds("older runs added"))
    statistics = seeding.settle_statistics()
    total, big = run_counts(jobs.big_id)
    print(f"\nAdded the older history: {total:,} runs in {time.perf_counter() - started:.1f} s; {statistics}.")
    large = measure_all(pages, paths, options, engine, f"Phase 2: {total:,} runs, {big:,} of the big job")

    print(f"\nGrowth from phase 1 to phase 2 (phase 2 / phase 1):")
    print(f"  {'page':<52} {'p50':>6} {'p95':>6}   queries")
    for label, _, _ in paths:
        a, b = small[label], large[label]
        print(f"  {label:<52} {b['p50'] / a['p50']:>5.2f}x {b['p95'] / a['p95']:>5.2f}x   "
              f"{a['queries']:.0f} -> {b['queries']:.0f}")
    print(f"\nSlowest SQL statement of each page in phase 2 (those over {options.show_sql_ms} ms):")
    shown = False
    for label, _, _ in paths:
        seconds, sql = large[label]["slowest"]
        if seconds * 1000 >= options.show_sql_ms:
            shown = True
            print(f"  {label}: {ms(seconds)} ms\n    {one_line(sql, 400)}")
    if not shown:
        print("  none")
    print(f"\nLoad average at the end {load_average()}.")


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs (default 10,000)")
    parser.add_argument("--small-runs", type=int, default=10_000, help="runs in phase 1 (default 10,000)")
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs in phase 2 (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page, one per round (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (default 3)")
    parser.add_argument("--page-seconds", type=float, default=60,
                        help="stop the rounds once they took this long per page, after at least 5 (default 60)")
    parser.add_argument("--show-sql-ms", type=float, default=5, help="print slowest statements over this (ms)")
    options = parser.parse_args(argv)
    if options.jobs < 2 or options.small_runs < 1000 or options.runs <= options.small_runs or options.requests < 1:
        parser.error("need --jobs >= 2, --small-runs >= 1000, --runs > --small-runs, --requests >= 1")
    return run_main(options, lambda env: bench(options, env), extra_env={"FIRETIME_TIMEZONE": TIMEZONE})


if __name__ == "__main__":
    sys.exit(main())
