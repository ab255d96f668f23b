"""The jobs list as a user reads it: status icons and their filter, the log icon per user, views
per job type, the find box, sorting with empty values last, the self-refresh, and the bulk
actions (run now, remove, restore) with what they answer."""
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.factories import csrf_from, make_domain, make_job, make_user
from tests.integration.test_query_counts import statements
from webapp.extensions import db
from webapp.jobtypes import registry
from webapp.models import AuditEvent, Job, JobState, Role, Run, RunStatus, Trigger
from webapp.runs.reads import mark_read

UTC = timezone.utc


def add_run(job, status, *, lines=0, trigger=Trigger.HAND, created=None, **extra) -> Run:
    run = Run(job_id=job.id, trigger=trigger, status=status, line_count=lines, **extra)
    if created is not None:
        run.created_at = created
    db.session.add(run)
    db.session.commit()
    return run


def row_ids(response) -> list[int]:
    """The job ids of the table's rows, top to bottom."""
    return [int(i) for i in re.findall(r'<tr id="job-(\d+)"', response.get_data(as_text=True))]


def flashes(client) -> list[str]:
    """The messages the next page shows (what a user reads after a bulk action)."""
    page = client.get("/jobs/").get_data(as_text=True)
    found = re.findall(r'<div class="flash[^"]*" role="status">(.*?)</div>', page, re.S)
    return [re.sub(r"\s+", " ", message).strip() for message in found]


@pytest.fixture
def root(ctx, login_as):
    user = make_user(Role.SUPERADMIN, username="root")
    return login_as(user)


# --- status icons and the status filter ---------------------------------------------------------

@pytest.fixture
def statuses(ctx):
    """A job per latest status; `skipped_last` succeeded, then had its next occurrence skipped."""
    jobs = {}
    for status in (RunStatus.FAILED, RunStatus.SUCCEEDED, RunStatus.IN_PROGRESS, RunStatus.WARNINGS):
        jobs[status] = make_job(f"Job {status}")
        add_run(jobs[status], RunStatus.QUEUED if status == RunStatus.SUCCEEDED else RunStatus.SUCCEEDED)
        add_run(jobs[status], status)
    jobs["never"] = make_job("Job never")
    jobs["skipped_last"] = make_job("Job skipped last")
    add_run(jobs["skipped_last"], RunStatus.SUCCEEDED)
    add_run(jobs["skipped_last"], RunStatus.SKIPPED, trigger=Trigger.PLAN, message="Skipped by root.",
            occurrence_at=datetime(2030, 1, 1, tzinfo=UTC))
    return {key: job.id for key, job in jobs.items()}


def test_each_row_shows_the_latest_status_as_an_icon_and_a_skip_is_never_the_latest(root, statuses):
    page = root.get("/jobs/").get_data(as_text=True)
    for key, label in [(RunStatus.FAILED, "Failed"), (RunStatus.SUCCEEDED, "Succeeded"),
                       (RunStatus.IN_PROGRESS, "In progress"), (RunStatus.WARNINGS, "Succeeded with warnings"),
                       ("never", "Never run"), ("skipped_last", "Succeeded")]:
        row = re.search(rf'<tr id="job-{statuses[key]}".*?</tr>', page, re.S).group(0)
        assert f'<span class="sr-only">{label}</span>' in row, (key, row)
        assert "<svg" in row
    assert "Skipped" not in page


def test_status_toggles_filter_by_the_latest_status_several_at_once(root, statuses):
    assert set(row_ids(root.get("/jobs/?status=failed"))) == {statuses[RunStatus.FAILED]}
    assert set(row_ids(root.get("/jobs/?status=failed&status=never"))) == {statuses[RunStatus.FAILED],
                                                                           statuses["never"]}
    # A skipped occurrence does not hide the run before it.
    assert set(row_ids(root.get("/jobs/?status=succeeded"))) == {statuses[RunStatus.SUCCEEDED],
                                                                 statuses["skipped_last"]}
    page = root.get("/jobs/?status=failed&status=never").get_data(as_text=True)
    assert re.search(r'id="status-failed" name="status" value="failed"\s+checked', page)
    assert re.search(r'id="status-never" name="status" value="never"\s+checked', page)
    assert not re.search(r'id="status-succeeded" name="status" value="succeeded"\s+checked', page)
    # An unknown status is ignored, not an error.
    assert set(row_ids(root.get("/jobs/?status=bogus"))) == set(statuses.values())


def test_sorting_by_status_puts_failures_first_and_never_run_last_both_ways(root, statuses):
    ascending = row_ids(root.get("/jobs/?sort=status&dir=asc"))
    descending = row_ids(root.get("/jobs/?sort=status&dir=desc"))
    assert ascending[0] == statuses[RunStatus.FAILED] and ascending[-1] == statuses["never"]
    assert descending[-1] == statuses["never"] and descending[0] != statuses[RunStatus.FAILED]


# --- the log icon ---------------------------------------------------------------------------------

def test_the_log_icon_is_dark_until_that_user_reads_the_log(ctx, client, login_as):
    alice = make_user(Role.SUPERADMIN, username="alice")
    bob = make_user(Role.SUPERADMIN, username="bob")
    job = make_job("Chatty")
    run = add_run(job, RunStatus.SUCCEEDED, lines=5)
    silent = add_run(make_job("Silent"), RunStatus.SUCCEEDED, lines=0)
    mark_read(alice, run)

    login_as(alice)
    page = client.get("/jobs/").get_data(as_text=True)
    assert f'data-log-popup="{run.id}" title="Log of run #{run.id}" aria-label="Log of run #{run.id}"' in page
    assert f'href="/runs/{run.id}"' in page
    assert f'aria-label="Log of run #{silent.id}"' in page  # a finished run without lines: nothing unread
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/jobs/"))})
    login_as(bob)
    page = client.get("/jobs/").get_data(as_text=True)
    assert f'aria-label="Log of run #{run.id} (unread)"' in page
    assert 'class="log-icon log-unread"' in page
    # Sorting by the log puts what bob has not read first, jobs that never ran last, both ways.
    never = make_job("Never ran")
    read_by_bob = add_run(make_job("Read by bob"), RunStatus.FAILED, lines=2)
    mark_read(bob, read_by_bob)
    assert row_ids(client.get("/jobs/?sort=log&dir=asc")) == [job.id, silent.job_id, read_by_bob.job_id, never.id]
    assert row_ids(client.get("/jobs/?sort=log&dir=desc")) == [silent.job_id, read_by_bob.job_id, job.id, never.id]
    # New lines after the read make it unread again.
    run.line_count = 9
    db.session.commit()
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/jobs/"))})
    login_as(alice)
    assert f'aria-label="Log of run #{run.id} (unread)"' in client.get("/jobs/").get_data(as_text=True)


# --- views per job type ---------------------------------------------------------------------------

@pytest.fixture
def import_type(app):
    """A job type that declares an extra column for its view, as an import job's directory."""
    key = "tests.list_import"
    registry.register(registry.JobType(key=key, label="List import", run=lambda ctx: None,
                                       extra={"list_columns": [("directory", "Directory")]}))
    yield key
    registry._REGISTRY.pop(key, None)


def test_views_per_job_type_with_counts_and_the_columns_the_type_declares(root, import_type):
    make_job("Import north", job_type=import_type, params={"directory": "/data/north"})
    make_job("Import south", job_type=import_type, params={"directory": "/data/south"})
    make_job("Selftest one")
    all_page = root.get("/jobs/").get_data(as_text=True)
    tabs = re.findall(r'<a href="[^"]*"[^>]*>\s*([^<]+?) <span class="count">(\d+)</span>', all_page)
    assert tabs == [("All", "3"), ("List import", "2"), ("Self-test", "1")]
    assert "Directory" not in all_page

    view = root.get(f"/jobs/?type={import_type}")
    page = view.get_data(as_text=True)
    assert len(row_ids(view)) == 2
    assert "Directory" in page and "/data/north" in page and "/data/south" in page
    assert re.search(r'aria-current="page">List import', page)
    # The extra column sorts too.
    assert [n for n in re.findall(r'>(Import \w+)</a>', root.get(f"/jobs/?type={import_type}&sort=p.directory&dir=desc")
                                  .get_data(as_text=True)) if n != "Import jobs"] == ["Import south", "Import north"]
    # A type without declared columns shows its first parameters, defaults filled in.
    defaults = make_job("Selftest defaults", params={})
    selftest = root.get("/jobs/?type=system.selftest").get_data(as_text=True)
    assert "Duration (seconds)" in selftest and "Log lines per second" in selftest
    row = re.search(rf'<tr id="job-{defaults.id}".*?</tr>', selftest, re.S).group(0)
    assert re.findall(r'<td class="param">([^<]*)</td>', row) == ["10", "2"]


# --- the find box ---------------------------------------------------------------------------------

def test_find_matches_name_description_domain_type_and_dataset_with_percent_and_underscore_literal(root):
    study = make_domain("Oncology study")
    ids = {
        "name": make_job("Nightly export").id,
        "description": make_job("Plain", description="copies the oncology data").id,
        "domain": make_job("Site job", domain=study).id,
        "dataset": make_job("Extract", params={"dataset": "Vitals 2026", "duration": 0}).id,
        "percent": make_job("Load 100% done").id,
        "underscore": make_job("load_all").id,
        "other": make_job("Loadxall").id,
    }
    assert set(row_ids(root.get("/jobs/?q=NIGHTLY"))) == {ids["name"]}
    assert set(row_ids(root.get("/jobs/?q=oncology"))) == {ids["description"], ids["domain"]}
    assert set(row_ids(root.get("/jobs/?q=vitals"))) == {ids["dataset"]}
    assert set(row_ids(root.get("/jobs/?q=self-test"))) == set(ids.values())  # the type's label
    assert set(row_ids(root.get("/jobs/?q=100%25"))) == {ids["percent"]}
    assert set(row_ids(root.get("/jobs/?q=load_"))) == {ids["underscore"]}
    assert "No job matches “nothing like it”." in root.get("/jobs/?q=nothing+like+it").get_data(as_text=True)


def test_find_matches_fire_times_typed_as_dates_or_times_in_server_time(root):
    # Server time is Europe/Amsterdam: 06:00 is 05:00 UTC in winter and 04:00 UTC in summer.
    winter = make_job("Winter", next_fire_at=datetime(2026, 1, 15, 5, 0, tzinfo=UTC)).id
    summer = make_job("Summer", prev_fire_at=datetime(2026, 7, 15, 4, 0, 30, tzinfo=UTC)).id
    seven = make_job("Seven", next_fire_at=datetime(2026, 7, 15, 5, 0, tzinfo=UTC)).id
    late = make_job("Late", next_fire_at=datetime(2026, 11, 22, 23, 30, tzinfo=UTC)).id  # 00:30 on the 23rd
    assert set(row_ids(root.get("/jobs/?q=06:00"))) == {winter, summer}
    assert set(row_ids(root.get("/jobs/?q=6:00"))) == {winter, summer}
    assert set(row_ids(root.get("/jobs/?q=2026-07-15"))) == {summer, seven}
    assert set(row_ids(root.get("/jobs/?q=2026-01-15+06:00"))) == {winter}
    assert set(row_ids(root.get("/jobs/?q=2026-11-23"))) == {late}
    assert set(row_ids(root.get("/jobs/?q=2026-11-22"))) == set()
    assert set(row_ids(root.get("/jobs/?q=2026-01"))) == {winter}
    # Not a time: plain text, no error.
    for text in ("25:00", "2026-13-01", "2026-02-30", "0000-01-01", "9999-12", "99:99"):
        assert root.get(f"/jobs/?q={text}").status_code == 200


@pytest.mark.parametrize("zone", ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Sydney",
                                  "Asia/Kolkata"])
def test_find_matches_times_of_day_and_dates_in_any_server_zone(ctx, monkeypatch, root, zone):
    # The server's zone is the console's (FIRETIME_TIMEZONE): UTC by default, the test's Amsterdam
    # otherwise; 06:00 is local, in winter and in summer (south of the equator the other way).
    monkeypatch.setitem(ctx.config, "TIMEZONE", zone)
    local = ZoneInfo(zone)

    def job(name, *at, column="next_fire_at"):
        return make_job(name, **{column: datetime(*at, tzinfo=local).astimezone(UTC)}).id

    january, july = job("January six", 2026, 1, 15, 6, 0), job("July six", 2026, 7, 15, 6, 0, 30, column="prev_fire_at")
    midnight, late = job("Midnight", 2026, 11, 22, 0, 0), job("Late", 2026, 11, 22, 23, 59)
    job("One minute after six", 2026, 3, 1, 6, 1)
    for text, expected in [("06:00", {january, july}), ("6:00", {january, july}), ("00:00", {midnight}),
                           ("23:59", {late}), ("2026-11-22", {midnight, late}), ("2026-11-22 23:59", {late}),
                           ("2026-07-15", {july}), ("2026-01", {january}), ("12:00", set())]:
        response = root.get(f"/jobs/?q={quote(text)}")
        assert response.status_code == 200, text
        assert set(row_ids(response)) == expected, (zone, text)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Amsterdam"])
def test_no_find_text_of_digits_colons_dashes_and_spaces_gives_an_error(ctx, monkeypatch, root, zone):
    monkeypatch.setitem(ctx.config, "TIMEZONE", zone)
    make_job("Daily", next_fire_at=datetime(2026, 11, 22, 5, 0, tzinfo=UTC))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(alphabet="0123456789:- T", max_size=18))
    def find(text):
        assert root.get(f"/jobs/?q={quote(text)}").status_code == 200, text

    find()


def test_finding_keeps_the_sort_view_and_filter(root):
    page = root.get("/jobs/?sort=domain&dir=desc&status=failed&type=system.selftest&q=x").get_data(as_text=True)
    for name, value in (("sort", "domain"), ("dir", "desc"), ("status", "failed"), ("type", "system.selftest")):
        assert f'<input type="hidden" name="{name}" value="{value}" form="jobs-find">' in page
    assert 'value="x"' in page  # the find box shows its text


# --- sorting ---------------------------------------------------------------------------------------

def test_every_column_sorts_with_empty_values_last_both_ways(root):
    study = make_domain("Alpha study")
    later = make_domain("Zulu study")
    hourly = {"kind": "interval", "every": 1, "unit": "hours", "anchor": "2026-01-01T00:00:00+00:00"}
    daily = {"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["06:00"]}
    a = make_job("A", domain=study, plan=daily, prev_fire_at=datetime(2026, 1, 1, tzinfo=UTC),
                 next_fire_at=datetime(2026, 2, 1, tzinfo=UTC)).id
    b = make_job("B", domain=later, plan=hourly, prev_fire_at=datetime(2026, 1, 2, tzinfo=UTC),
                 next_fire_at=datetime(2026, 2, 2, tzinfo=UTC)).id
    empty = make_job("C").id  # installation job: no domain, plan disabled, no fire times
    for column in ("domain", "plan", "previous", "next"):
        ascending = row_ids(root.get(f"/jobs/?sort={column}&dir=asc"))
        descending = row_ids(root.get(f"/jobs/?sort={column}&dir=desc"))
        assert ascending[-1] == empty and descending[-1] == empty, column
        assert ascending[:2] == descending[:2][::-1], column
    for column in ("name", "type", "scope", "status"):
        assert root.get(f"/jobs/?sort={column}&dir=desc").status_code == 200
    assert row_ids(root.get("/jobs/?sort=name&dir=desc")) == [empty, b, a]
    page = root.get("/jobs/?sort=next&dir=asc").get_data(as_text=True)
    assert 'aria-sort="ascending"' in page
    # Status, log, job, type, execution, domain, plan, previous and next fire.
    assert len(re.findall(r'<th scope="col" class="sortable[ "]', page)) == 9


# --- previous fire --------------------------------------------------------------------------------

def test_previous_fire_is_the_last_time_the_job_ran_whoever_started_it(root):
    job = make_job("By hand", prev_fire_at=datetime(2026, 1, 1, 5, 0, tzinfo=UTC))
    add_run(job, RunStatus.SUCCEEDED, trigger=Trigger.HAND, created=datetime(2026, 3, 4, 9, 15, tzinfo=UTC))
    page = root.get("/jobs/").get_data(as_text=True)
    row = re.search(rf'<tr id="job-{job.id}".*?</tr>', page, re.S).group(0)
    assert "2026-03-04 10:15" in row  # Amsterdam time
    assert "whoever started it" in page  # the header says so


# --- self-refresh ---------------------------------------------------------------------------------

def test_the_table_refreshes_itself_only_while_a_run_of_its_jobs_is_active_keeping_ticks(root):
    quiet = make_job("Quiet")
    add_run(quiet, RunStatus.SUCCEEDED)
    page = root.get("/jobs/?sort=name&dir=desc").get_data(as_text=True)
    assert 'hx-trigger="refresh"' in page and "every 3s" not in page
    # A next fire within the hour wakes it when due, to show the run it starts.
    quiet.next_fire_at = datetime.now(UTC) + timedelta(minutes=10)
    db.session.commit()
    page = root.get("/jobs/?sort=name&dir=desc").get_data(as_text=True)
    delay = int(re.search(r'hx-trigger="refresh, load delay:(\d+)s"', page).group(1))
    assert 590 <= delay <= 602

    busy = make_job("Busy")
    add_run(busy, RunStatus.QUEUED)
    page = root.get("/jobs/?sort=name&dir=desc").get_data(as_text=True)
    refresh = re.search(r'<div id="jobs-refresh".*?</div>', page, re.S).group(0)
    assert "every 3s" in refresh and 'hx-get="/jobs/?sort=name&amp;dir=desc&amp;page=1"' in refresh
    assert 'hx-include="#jobs-table tbody"' in refresh  # its ticked boxes

    fragment = root.get(f"/jobs/?sort=name&dir=desc&page=1&job_id={quiet.id}",
                        headers={"HX-Request": "true", "HX-Target": "jobs-table"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="jobs-table"') and "<html" not in fragment
    assert re.search(rf'id="tick-{quiet.id}"[^>]*checked', fragment)
    assert not re.search(rf'id="tick-{busy.id}"[^>]*checked', fragment)


# --- bulk actions ---------------------------------------------------------------------------------

def test_bulk_run_now_links_each_new_run(root, ctx):
    first, second = make_job("First"), make_job("Second")
    token = csrf_from(root.get("/jobs/"))
    response = root.post("/jobs/run", data={"csrf_token": token, "job_id": [str(first.id), str(second.id)]},
                         headers={"Referer": "http://localhost/jobs/?sort=name&dir=desc"})
    assert response.status_code == 302 and response.headers["Location"] == "http://localhost/jobs/?sort=name&dir=desc"
    runs = db.session.scalars(select(Run).order_by(Run.id)).all()
    assert {run.job_id for run in runs} == {first.id, second.id}
    message = flashes(root)[0]
    assert message.startswith("Queued 2 runs:")
    for run in runs:
        assert f'<a href="/runs/{run.id}">#{run.id}</a>' in message

    # Many at once: the first ten linked, the rest on the executions page; a removed job is refused.
    many = [make_job(f"Many {n}") for n in range(12)]
    removed = make_job("Removed one", state=JobState.REMOVED)
    root.post("/jobs/run", data={"csrf_token": token, "job_id": [str(job.id) for job in many + [removed]]})
    messages = flashes(root)
    assert messages[0].startswith("Queued 12 runs:") and messages[0].count('<a href="/runs/') == 10
    assert messages[0].endswith('and <a href="/executions/">2 more</a>.')
    assert messages[1:] == ["Job &#39;Removed one&#39; is removed; restore it before running it."]


def test_bulk_run_of_only_foreign_ids_answers_like_ids_that_do_not_exist(app, ctx, client, login_as):
    mine, theirs = make_domain("Mine"), make_domain("Theirs")
    admin = make_user(Role.DOMAIN_ADMIN, domain=mine, username="mine-admin")
    foreign = make_job("Theirs only", domain=theirs)
    deleted = make_job("Gone", domain=mine, deleted_at=datetime(2026, 1, 1, tzinfo=UTC))
    login_as(admin)
    token = csrf_from(client.get("/jobs/"))
    answers = {}
    for name, ids in {"foreign": [foreign.id], "deleted": [deleted.id], "unknown": [987654]}.items():
        response = client.post("/jobs/run", data={"csrf_token": token, "job_id": [str(i) for i in ids]})
        assert response.status_code == 302
        answers[name] = flashes(client)
    assert answers["foreign"] == answers["deleted"] == answers["unknown"] == [
        "1 of the ticked jobs no longer exists: nothing was done to it."]
    assert db.session.scalar(select(Run.id)) is None
    client.post("/jobs/run", data={"csrf_token": token})
    assert flashes(client) == ["Tick at least one job to run."]


def test_bulk_remove_and_restore(root, ctx):
    first = make_job("First", plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["06:00"]})
    second = make_job("Second")
    token = csrf_from(root.get("/jobs/"))
    ticked = {"csrf_token": token, "job_id": [str(first.id), str(second.id)]}

    assert root.post("/jobs/remove", data=ticked).status_code == 302
    assert flashes(root) == ["Removed 2 jobs: “First”, “Second”."]
    db.session.expire_all()
    assert {db.session.get(Job, first.id).state, db.session.get(Job, second.id).state} == {JobState.REMOVED}
    page = root.get("/jobs/").get_data(as_text=True)
    assert "Run First now" not in page  # a removed job offers no Run now

    root.post("/jobs/remove", data={"csrf_token": token, "job_id": [str(first.id)]})
    assert flashes(root) == ["“First” is already removed."]

    assert root.post("/jobs/restore", data=ticked).status_code == 302
    assert flashes(root) == ["Restored 2 jobs: “First”, “Second”."]
    db.session.expire_all()
    restored = db.session.get(Job, first.id)
    assert restored.state == JobState.ACTIVE and restored.next_fire_at is not None
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == first.id)
                                 .order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["remove", "restore"]


def test_list_and_bulk_actions_refuse_hostile_input_without_an_error(root, ctx):
    make_job("Plain")
    for query in ("q=" + "x" * 2000, "q=%25%25%25_%5C", "q=%27%3B+drop+table+jobs", "status=<script>",
                  "type=<script>alert(1)</script>", "sort=../../etc",
                  "dir=sideways", "page=-4", "page=99999999999999999999", "type=" + "t" * 500,
                  "sort=p.directory", "job_id=abc&job_id=-1&job_id=99999999999999"):
        response = root.get(f"/jobs/?{query}")
        assert response.status_code == 200, query
        assert "<script>" not in response.get_data(as_text=True).split("<main>")[1]
    token = csrf_from(root.get("/jobs/"))
    for url in ("/jobs/run", "/jobs/remove", "/jobs/restore"):
        response = root.post(url, data={"csrf_token": token, "job_id": ["abc", "-1", "0012", "9" * 30]})
        assert response.status_code == 302, url
    assert root.post("/jobs/remove", data={"job_id": "1"}).status_code == 400  # no CSRF token


# --- speed ----------------------------------------------------------------------------------------

def test_every_way_of_reading_the_list_makes_as_many_statements_with_30_rows_as_with_3(app, root, ctx):
    study = make_domain("Counted study")
    urls = ["/jobs/", "/jobs/?status=failed&status=succeeded&status=never&sort=status",
            "/jobs/?q=job&sort=plan&dir=desc", "/jobs/?type=system.selftest&sort=p.duration",
            "/jobs/?q=06:00", "/jobs/?sort=previous&dir=desc", "/jobs/?sort=log&dir=desc"]
    counted = {}
    made = 0
    for rows in (3, 30):
        while made < rows:
            job = make_job(f"Counted job {made}", domain=make_domain(f"Site {made}", parent=study),
                           next_fire_at=datetime(2026, 1, 1, 5, 0, tzinfo=UTC) + timedelta(days=made))
            add_run(job, [RunStatus.FAILED, RunStatus.SUCCEEDED][made % 2], lines=3)
            made += 1
        for url in urls:
            root.get(url)
            with statements(app) as sent:
                response = root.get(url)
            assert response.status_code == 200
            counted[url, rows] = len(sent)
        assert len(row_ids(root.get("/jobs/"))) == min(rows, 25)
    assert {url: counted[url, 30] for url in urls} == {url: counted[url, 3] for url in urls}
