"""The executions page (S4 "all jobs"): every run the user may see, filtered, expanded, audited,
retried and cancelled; a domain administrator never reaches another domain's runs."""
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from tests.factories import csrf_from, make_domain, make_job, make_user
from tests.integration.test_query_counts import statements
from webapp.executions import queries
from webapp.extensions import db
from webapp.models import AuditEvent, Role, Run, RunFile, RunStatus, Trigger
from webapp.models.audit import record
from webapp.models.types import utcnow


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


def _run(job, status=RunStatus.SUCCEEDED, *, trigger=Trigger.PLAN, message="", ago=timedelta(0), **extra):
    now = utcnow() - ago
    run = Run(job_id=job.id, trigger=trigger, status=status, message=message, created_at=now,
              started_at=None if status in (RunStatus.QUEUED, RunStatus.SKIPPED) else now,
              finished_at=now + timedelta(seconds=3) if status not in (RunStatus.QUEUED, RunStatus.IN_PROGRESS) else None,
              **extra)
    db.session.add(run)
    db.session.commit()
    return run


@pytest.fixture
def estate(ctx):
    """Study A (with a site) and Study B, a job in each and one by installation, runs of each;
    a superadmin and a domain administrator of Study A."""
    study_a = make_domain("Study A")
    site = make_domain("Site A1", parent=study_a)
    study_b = make_domain("Study B")
    make_user(Role.SUPERADMIN, username="root")
    make_user(Role.DOMAIN_ADMIN, domain=study_a, username="admin-a")
    jobs = {"a": make_job("Import A", domain=study_a), "site": make_job("Export site", domain=site),
            "b": make_job("Import B", domain=study_b), "install": make_job("Housekeeping")}
    runs = {  # created oldest first, as ids are handed out
        "site_ok": _run(jobs["site"], RunStatus.SUCCEEDED, ago=timedelta(days=3),
                        stats={"records": 42}, worker_name="worker-7", warning_count=2),
        "a_failed": _run(jobs["a"], RunStatus.FAILED, trigger=Trigger.HAND, message="Disk 100% full_now",
                         args="duration=1", ago=timedelta(hours=3)),
        "b_failed": _run(jobs["b"], RunStatus.FAILED, message="B broke", ago=timedelta(hours=2)),
        "a_queued": _run(jobs["a"], RunStatus.QUEUED, trigger=Trigger.HAND, ago=timedelta(hours=1)),
        "install_ok": _run(jobs["install"], RunStatus.SUCCEEDED, ago=timedelta(minutes=5)),
        "b_queued": _run(jobs["b"], RunStatus.QUEUED, trigger=Trigger.API),
    }
    db.session.add(RunFile(run_id=runs["site_ok"].id, job_id=jobs["site"].id, name="records.csv",
                           path="x/records.csv", size=2048))
    db.session.commit()
    return SimpleNamespace(jobs={k: j.id for k, j in jobs.items()}, runs={k: r.id for k, r in runs.items()})


def listed(response) -> list[int]:
    """Run ids of the rows, in order."""
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return [int(i) for i in re.findall(r'<tr id="run-(\d+)" class="exec-row"', response.get_data(as_text=True))]


def test_a_domain_admin_sees_only_the_runs_of_their_domains_newest_first(estate, app, client, login_as):
    login_as(SimpleNamespace(username="admin-a"))
    r = estate.runs
    assert listed(client.get("/executions/")) == [r["a_queued"], r["a_failed"], r["site_ok"]]
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/executions/"))})
    login_as(SimpleNamespace(username="root"))
    assert listed(client.get("/executions/")) == sorted(r.values(), reverse=True)


@pytest.mark.parametrize("query, expected", [
    ("status=failed", ["b_failed", "a_failed"]),
    ("status=failed&status=queued", ["b_queued", "a_queued", "b_failed", "a_failed"]),
    ("status=failed&sort=id&dir=asc", ["a_failed", "b_failed"]),
    ("trigger=api", ["b_queued"]),
    ("domain=Study+B", ["b_queued", "b_failed"]),
    ("domain=installation", ["install_ok"]),
    ("job=import", ["b_queued", "a_queued", "b_failed", "a_failed"]),
    ("type=system.selftest&job=export", ["site_ok"]),
    ("q=100%25+full_", ["a_failed"]),  # % and _ are literal
    ("q=100%25+fullxnow", []),
    ("q=broke", ["b_failed"]),
    ("period=24h&status=succeeded", ["install_ok"]),
    ("sort=job&dir=asc&status=failed", ["a_failed", "b_failed"]),
    ("sort=job&dir=desc&status=failed", ["b_failed", "a_failed"]),
])
def test_filters(estate, client, login_as, query, expected):
    login_as(SimpleNamespace(username="root"))
    assert listed(client.get(f"/executions/?{query}")) == [estate.runs[key] for key in expected]


def test_find_by_run_number_and_date_range(estate, client, login_as, ctx):
    login_as(SimpleNamespace(username="root"))
    site_ok = estate.runs["site_ok"]
    assert listed(client.get(f"/executions/?q=%23{site_ok}")) == [site_ok]
    day = (utcnow() - timedelta(days=3)).astimezone(queries.ZoneInfo(ctx.config["TIMEZONE"])).date()
    assert listed(client.get(f"/executions/?from={day}&to={day}")) == [site_ok]
    # Reversed dates are swapped and said; a date that is not one is ignored and said.
    page = client.get(f"/executions/?from={day + timedelta(days=1)}&to={day}&status=succeeded")
    assert listed(page) == [site_ok] or listed(page) == []  # the day after has install_ok only if
    assert "swapped" in page.get_data(as_text=True)
    page = client.get("/executions/?from=2026-02-31&status=nonsense&period=forever&trigger=x")
    body = page.get_data(as_text=True)
    assert len(listed(page)) == 6
    assert "is not a date" in body and "Unknown status ignored" in body and "Unknown period" in body


def test_the_filter_form_keeps_the_filters_and_the_table_alone_comes_back_to_htmx(estate, client, login_as):
    login_as(SimpleNamespace(username="root"))
    page = client.get("/executions/?status=failed&q=broke").get_data(as_text=True)
    assert '<option value="failed" selected>' in page and 'name="q" value="broke"' in page
    fragment = client.get("/executions/?status=failed", headers={"HX-Request": "true",
                                                                  "HX-Target": "executions-table"})
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="executions-table">') and "<html" not in body
    # Sort headers and pager keep the filters.
    assert "status=failed" in re.search(r'<th scope="col"[^>]*>\s*<a href="([^"]+)"', body).group(1)


def test_the_total_stops_at_the_cap(estate, client, login_as, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    login_as(SimpleNamespace(username="root"))
    body = client.get("/executions/").get_data(as_text=True)
    assert "More than 2 runs" in body
    assert "6 runs" not in body
    body = client.get("/executions/?status=failed").get_data(as_text=True)
    assert "2 runs match the filters" in body


def test_a_row_expands_to_statistics_counts_worker_and_files(estate, client, login_as):
    login_as(SimpleNamespace(username="admin-a"))
    run_id = estate.runs["site_ok"]
    response = client.get(f"/executions/{run_id}/details", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="run-{run_id}-details"')
    assert "records</dt><dd>42" in body and "worker-7" in body
    assert re.search(r"<dt>Warnings</dt><dd>2</dd>", body)
    file_id = re.search(r'href="/runs/files/(\d+)"[^>]*>records.csv', body)
    assert file_id
    assert f'data-log-popup="{run_id}"' in body


def test_retry_makes_a_new_run_linked_to_the_original_and_audited(estate, client, login_as, ctx):
    client = login_as(SimpleNamespace(username="admin-a"))
    failed = estate.runs["a_failed"]
    page = client.get("/executions/")
    assert f'action="/executions/{failed}/retry"' in page.get_data(as_text=True)
    response = client.post(f"/executions/{failed}/retry", data={"csrf_token": csrf_from(page)},
                           headers={"Referer": "http://localhost/executions/?status=failed"})
    assert response.status_code == 302 and response.location.endswith("/executions/?status=failed")
    db.session.expire_all()
    new = db.session.scalar(select(Run).where(Run.retry_of_id == failed))
    assert new.trigger == Trigger.RETRY and new.args == "duration=1" and new.job_id == estate.jobs["a"]
    assert new.requested_by.username == "admin-a"
    # The answer links the new run; its row says what it retries.
    shown = client.get("/executions/").get_data(as_text=True)
    assert f'<a href="/runs/{new.id}">#{new.id}</a>' in shown and f"is queued as a retry of #{failed}" in shown
    assert re.search(rf'retry of <a href="/runs/{failed}">#{failed}</a>', shown)
    retried = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "retry"))
    assert retried.object_type == "run" and retried.object_id == failed and retried.actor_name == "admin-a"
    assert retried.after == {"retry_run_id": new.id}
    # The original's audit popup shows the retry, naming both runs by number, not only the job.
    audit = client.get(f"/executions/{failed}/audit", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "retry" in audit and "admin-a" in audit
    job_name = db.session.get(Run, failed).job.name
    assert f"run “#{failed} of {job_name}”" in audit
    assert f"Run #{failed} is retried as run #{new.id}." in audit
    details = client.get(f"/executions/{failed}/details").get_data(as_text=True)
    assert f'Retried as</dt><dd><a href="/runs/{new.id}">#{new.id}</a>' in details


def test_only_failed_and_cancelled_runs_are_retried(estate, client, login_as):
    client = login_as(SimpleNamespace(username="root"))
    token = csrf_from(client.get("/executions/"))
    ok = estate.runs["install_ok"]
    client.post(f"/executions/{ok}/retry", data={"csrf_token": token})
    body = client.get("/executions/").get_data(as_text=True)
    assert f"Run #{ok} is succeeded: only failed or cancelled runs can be retried." in body
    assert db.session.scalar(select(Run).where(Run.retry_of_id == ok)) is None
    assert f'action="/executions/{ok}/retry"' not in body


def test_bulk_cancel_says_what_happened_to_each(estate, client, login_as):
    client = login_as(SimpleNamespace(username="root"))
    page = client.get("/executions/")
    r = estate.runs
    assert f'name="run_id" value="{r["a_queued"]}" form="cancel-form"' in page.get_data(as_text=True)
    client.post("/executions/cancel", data={"csrf_token": csrf_from(page),
                                            "run_id": [r["a_queued"], r["install_ok"], "999999"]})
    body = client.get("/executions/").get_data(as_text=True)
    assert (f"1 of 3 run(s) cancelled: #{r['a_queued']} cancelled; #{r['install_ok']} had already finished; "
            "#999999 not found.") in body
    db.session.expire_all()
    assert db.session.get(Run, r["a_queued"]).status == RunStatus.CANCELLED
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "cancel")).object_id == r["a_queued"]
    client.post("/executions/cancel", data={"csrf_token": csrf_from(page)})
    assert "Tick at least one waiting run" in client.get("/executions/").get_data(as_text=True)


def test_a_domain_admin_gets_404_for_other_domains_runs_everywhere(estate, client, login_as):
    client = login_as(SimpleNamespace(username="admin-a"))
    token = csrf_from(client.get("/executions/"))
    r = estate.runs
    for key in ("b_failed", "install_ok"):
        assert client.get(f"/executions/{r[key]}/details").status_code == 404
        assert client.get(f"/executions/{r[key]}/audit", headers={"HX-Request": "true"}).status_code == 404
        assert client.get(f"/executions/{r[key]}/audit").status_code == 404
        assert client.post(f"/executions/{r[key]}/retry", data={"csrf_token": token}).status_code == 404
    assert client.post("/executions/cancel", data={"csrf_token": token, "run_id": [r["b_queued"]]}).status_code == 404
    # Mixed with their own: theirs is cancelled, the other reported as not found and left waiting.
    client.post("/executions/cancel", data={"csrf_token": token, "run_id": [r["b_queued"], r["a_queued"]]})
    body = client.get("/executions/").get_data(as_text=True)
    assert f"#{r['b_queued']} not found" in body and f"#{r['a_queued']} cancelled" in body
    db.session.expire_all()
    assert db.session.get(Run, r["b_queued"]).status == RunStatus.QUEUED
    assert db.session.scalar(select(Run).where(Run.retry_of_id.isnot(None))) is None
    # Filters offer only what they may see.
    page = client.get("/executions/").get_data(as_text=True)
    assert "Study B" not in page and "By installation" not in page and "Housekeeping" not in page


def test_the_audit_popup_shows_only_that_runs_records_the_user_may_read(estate, client, login_as, ctx):
    r = estate.runs
    with_job = {run.id: run for run in db.session.scalars(select(Run))}
    record("cancel", "run", with_job[r["a_queued"]], actor=None, object_name="Import A", message="by the clock",
           domain_id=with_job[r["a_queued"]].job.domain_id)
    record("cancel", "run", with_job[r["a_failed"]], actor=None, object_name="Import A", message="other run",
           domain_id=with_job[r["a_failed"]].job.domain_id)
    db.session.commit()
    client = login_as(SimpleNamespace(username="admin-a"))
    body = client.get(f"/executions/{r['a_queued']}/audit", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "by the clock" in body and "other run" not in body and "<html" not in body
    page = client.get(f"/executions/{r['a_queued']}/audit").get_data(as_text=True)
    assert "<html" in page and "by the clock" in page


def test_runs_of_a_deleted_job_do_not_link_to_its_page(estate, client, login_as, ctx):
    job = db.session.get(__import__("webapp.models", fromlist=["Job"]).Job, estate.jobs["b"])
    job.deleted_at = utcnow()
    db.session.commit()
    client = login_as(SimpleNamespace(username="root"))
    body = client.get("/executions/?domain=Study+B").get_data(as_text=True)
    assert f'href="/jobs/{estate.jobs["b"]}"' not in body and "deleted</span>" in body
    assert f'action="/executions/{estate.runs["b_failed"]}/retry"' not in body


def test_the_list_makes_as_many_statements_with_30_rows_as_with_3(estate, client, login_as, app):
    """Each row's job, domain and requester come with the page, not one query per row."""
    client = login_as(SimpleNamespace(username="root"))
    counted = {}
    for added, shown in ((3, 3), (27, 25)):  # 6 runs without requester already, 25 rows a page
        with app.app_context():
            for n in range(added):
                requester = make_user(Role.SYSTEM, username=f"requester-{added}-{n}")
                job = make_job(f"Job {added}-{n}", domain=make_domain(f"Site {added}-{n}"))
                _run(job, RunStatus.SUCCEEDED, trigger=Trigger.HAND, requested_by_id=requester.id)
        client.get("/executions/")
        with statements(app) as sent:
            response = client.get("/executions/")
        counted[added] = len(sent)
        body = response.get_data(as_text=True)
        assert body.count("· requester-") == shown and len(re.findall(r"<td>Site \d+-\d+</td>", body)) == shown
    assert counted[27] == counted[3]


def test_an_order_no_index_serves_is_refused_while_more_than_the_cap_match(estate, client, login_as, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 3)
    login_as(SimpleNamespace(username="root"))
    r = estate.runs
    page = client.get("/executions/?sort=job&dir=desc")
    assert listed(page) == sorted(r.values(), reverse=True)
    assert "shown in run order: sorting them by job needs 3 or fewer" in page.get_data(as_text=True)
    # Filtered down to the cap, the order applies.
    page = client.get("/executions/?sort=job&dir=desc&q=import&status=failed")
    assert listed(page) == [r["b_failed"], r["a_failed"]]
    assert "sorting them" not in page.get_data(as_text=True)


def test_a_window_reads_only_its_runs_even_with_ids_out_of_time_order(estate, client, login_as, ctx):
    """A run committed a moment late (a higher id, an earlier time) is still in its window."""
    late = _run(db.session.get(__import__("webapp.models", fromlist=["Job"]).Job, estate.jobs["a"]),
                RunStatus.FAILED, ago=timedelta(hours=2, minutes=30))
    login_as(SimpleNamespace(username="root"))
    assert listed(client.get("/executions/?period=24h&status=failed")) == [late.id, estate.runs["b_failed"],
                                                                           estate.runs["a_failed"]]
    assert listed(client.get("/executions/?period=1h")) == [estate.runs["b_queued"], estate.runs["install_ok"]]


def test_a_skipped_occurrence_is_in_the_last_hours_from_its_fire_time_not_from_the_skip(estate, client, login_as):
    # "Skip the next occurrence" writes the run now, for a fire time ahead: the dashboard's tiles
    # link these windows, and a skip of tonight's run is not something of the last 24 hours yet.
    login_as(SimpleNamespace(username="root"))
    job = make_job("Nightly export")
    ahead = _run(job, RunStatus.SKIPPED, message="Skipped by root.", occurrence_at=utcnow() + timedelta(hours=3))
    past = _run(job, RunStatus.SKIPPED, message="Skipped by root.", ago=timedelta(hours=2),
                occurrence_at=utcnow() - timedelta(minutes=10))
    assert listed(client.get("/executions/?status=skipped")) == [past.id, ahead.id]  # the list holds both
    assert listed(client.get("/executions/?period=24h&status=skipped")) == [past.id]
    assert listed(client.get("/executions/?period=24h")) == [past.id, estate.runs["b_queued"],
                                                             estate.runs["install_ok"], estate.runs["a_queued"],
                                                             estate.runs["b_failed"], estate.runs["a_failed"]]
