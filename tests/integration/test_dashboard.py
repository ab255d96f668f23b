"""The dashboard: for what the user may see, runs in progress with live progress, the last 24
hours by status and by hour, the next planned fires and the latest failures."""
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest

from tests.factories import make_domain, make_job, make_user
from tests.integration.test_executions import _quick_password_hashes, _run  # noqa: F401  (fixture)
from tests.integration.test_query_counts import statements
from webapp.execution import livelog
from webapp.extensions import db, redis_client
from webapp.models import Role, RunStatus
from webapp.models.types import utcnow

HTMX = {"HX-Request": "true"}


@pytest.fixture
def estate(ctx):
    study_a = make_domain("Study A")
    study_b = make_domain("Study B")
    make_user(Role.SUPERADMIN, username="root")
    make_user(Role.DOMAIN_ADMIN, domain=study_a, username="admin-a")
    soon = utcnow() + timedelta(minutes=30)
    a = make_job("Import A", domain=study_a, next_fire_at=soon)
    b = make_job("Import B", domain=study_b, next_fire_at=soon - timedelta(minutes=10))
    runs = SimpleNamespace(
        a_old_failed=_run(a, RunStatus.FAILED, message="A broke long ago", ago=timedelta(days=2)),
        a_failed=_run(a, RunStatus.FAILED, message="A broke", ago=timedelta(hours=2)),
        a_ok=_run(a, RunStatus.SUCCEEDED, ago=timedelta(hours=1)),
        b_failed=_run(b, RunStatus.FAILED, message="B broke", ago=timedelta(minutes=30)),
        a_running=_run(a, RunStatus.IN_PROGRESS, progress=20, progress_message="DB says 20"),
        b_running=_run(b, RunStatus.IN_PROGRESS, progress=70),
    )
    return SimpleNamespace(a=a.id, b=b.id, runs=SimpleNamespace(**{k: r.id for k, r in vars(runs).items()}))


def counts_of(body) -> dict[str, int]:
    """Status -> count, as the 24-hour tiles show them."""
    return {status: int(count) for status, count in re.findall(
        r'href="/executions/\?status=(\w+)&amp;period=24h">\s*<span[^>]*>.*?</span>\s*<strong>(\d+)</strong>', body, re.S)}


def test_a_domain_admin_sees_only_their_domains(estate, client, login_as):
    login_as(SimpleNamespace(username="admin-a"))
    body = client.get("/dashboard/").get_data(as_text=True)
    r = estate.runs
    assert f'id="live-run-{r.a_running}"' in body and f'id="live-run-{r.b_running}"' not in body
    assert counts_of(body) == {"queued": 0, "in_progress": 1, "succeeded": 1, "succeeded_with_warnings": 0,
                               "failed": 1, "cancelled": 0, "skipped": 0}
    assert "Import B" not in body and "B broke" not in body
    # The latest failures (older than 24 hours too), each opening the log popup.
    assert re.findall(r'data-log-popup="(\d+)">Import A', body)[-2:] == [str(r.a_failed), str(r.a_old_failed)]
    assert f'<a href="/jobs/{estate.a}">Import A</a>' in body  # next fires


def test_a_superadmin_sees_everything(estate, client, login_as):
    login_as(SimpleNamespace(username="root"))
    body = client.get("/dashboard/").get_data(as_text=True)
    r = estate.runs
    assert f'id="live-run-{r.a_running}"' in body and f'id="live-run-{r.b_running}"' in body
    assert counts_of(body)["failed"] == 2 and counts_of(body)["in_progress"] == 2
    fires = re.findall(r'<a href="/jobs/(\d+)">Import', body.split("Next planned fires")[1].split("</table>")[0])
    assert fires == [str(estate.b), str(estate.a)]  # soonest first
    # Each count links to the executions page filtered the same way, where as many rows show.
    listed = client.get("/executions/?status=failed&period=24h").get_data(as_text=True)
    assert listed.count('class="exec-row"') == 2


def test_the_chart_and_its_text_fallback_say_the_same(estate, client, login_as):
    login_as(SimpleNamespace(username="root"))
    body = client.get("/dashboard/").get_data(as_text=True)
    assert '<svg class="chart"' in body and "Runs per hour over the last 24 hours, by status" in body
    rows = re.findall(r'<tr><th scope="row">[^<]+</th>((?:<td>\d+</td>)+)</tr>', body)
    assert len(rows) == 24
    per_hour = [list(map(int, re.findall(r"<td>(\d+)</td>", row))) for row in rows]
    assert sum(map(sum, per_hour)) == 5  # the run of two days ago is outside the window
    assert per_hour[-1][5] == 2  # this hour: two in progress (the sixth column)


def test_progress_comes_from_redis_while_it_is_there(estate, client, login_as):
    login_as(SimpleNamespace(username="root"))
    livelog.set_progress(redis_client.conn, estate.runs.a_running, 55, "half way")
    body = client.get("/dashboard/live", headers=HTMX).get_data(as_text=True)
    assert 'aria-valuenow="55"' in body and "half way" in body
    assert 'aria-valuenow="70"' in body  # no live value: the database's


def test_redis_away_shows_the_database_values(estate, client, login_as, redis_server):
    login_as(SimpleNamespace(username="root"))
    redis_server.stop()
    try:
        response = client.get("/dashboard/")
        fragment = client.get("/dashboard/live", headers=HTMX)
    finally:
        redis_server.start()
    assert response.status_code == 200 and fragment.status_code == 200
    body = fragment.get_data(as_text=True)
    assert 'aria-valuenow="20"' in body and "DB says 20" in body


def test_the_live_panel_polls_quickly_while_runs_are_active_and_tells_the_summary_of_changes(estate, client,
                                                                                             login_as):
    login_as(SimpleNamespace(username="root"))
    body = client.get("/dashboard/").get_data(as_text=True)
    poll = re.search(r'id="dashboard-live"[^>]*hx-get="([^"]+)" hx-trigger="every (\d+)s"', body)
    assert poll and poll.group(2) == "3"
    assert 'hx-trigger="dashboard-changed from:body, every 60s"' in body
    url = poll.group(1).replace("&amp;", "&")
    same = client.get(url, headers=HTMX)
    assert "HX-Trigger" not in same.headers
    # A run ends: the next poll names the change, so the summary reloads; then it polls slowly.
    run = db.session.get(__import__("webapp.models", fromlist=["Run"]).Run, estate.runs.a_running)
    run.status = RunStatus.SUCCEEDED
    other = db.session.get(type(run), estate.runs.b_running)
    other.status = RunStatus.FAILED
    db.session.commit()
    changed = client.get(url, headers=HTMX)
    assert changed.headers.get("HX-Trigger") == "dashboard-changed"
    assert 'hx-trigger="every 5s"' in changed.get_data(as_text=True)  # a short run still shows
    assert "No run is in progress." in changed.get_data(as_text=True)
    summary = client.get("/dashboard/summary", headers=HTMX).get_data(as_text=True)
    assert summary.lstrip().startswith('<div id="dashboard-summary"') and counts_of(summary)["failed"] == 3


def test_latest_failures_are_ordered_by_when_they_ended(estate, client, login_as):
    login_as(SimpleNamespace(username="root"))
    r = estate.runs
    # Created before B's failure but ran for two hours: it ended after it.
    long_one = db.session.get(__import__("webapp.models", fromlist=["Run"]).Run, r.a_failed)
    long_one.finished_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    body = client.get("/dashboard/").get_data(as_text=True)
    failures = body[body.index('id="failures-title"'):]
    shown = [int(run_id) for run_id in re.findall(r'data-log-popup="(\d+)"', failures)]
    assert shown == [r.a_failed, r.b_failed, r.a_old_failed]
    ended = re.findall(r'<td class="when">([^<]+)</td>', failures)
    assert ended == sorted(ended, reverse=True)


def test_statements_do_not_grow_with_rows(estate, client, login_as, app):
    login_as(SimpleNamespace(username="root"))
    counted = {}
    for added in (2, 20):
        with app.app_context():
            for n in range(added):
                job = make_job(f"Job {added}-{n}", domain=make_domain(f"Site {added}-{n}"),
                               next_fire_at=utcnow() + timedelta(hours=n + 1))
                _run(job, RunStatus.IN_PROGRESS)
                _run(job, RunStatus.FAILED)
        client.get("/dashboard/")
        with statements(app) as sent:
            assert client.get("/dashboard/").status_code == 200
        counted[added] = len(sent)
    assert counted[20] == counted[2]


def test_every_page_names_who_started_a_run_and_a_jobs_domain_alike(estate, client, login_as):
    """presenters.trigger_label and domain_label: the executions page, the run page and the jobs
    list say the same as the dashboard."""
    from webapp.models import Run, Trigger, User

    login_as(SimpleNamespace(username="root"))
    root = db.session.scalar(db.select(User).filter_by(username="root"))
    housekeeping = make_job("Housekeeping")  # by installation: no domain
    run = _run(housekeeping, RunStatus.IN_PROGRESS, trigger=Trigger.HAND, requested_by_id=root.id)
    assert db.session.get(Run, run.id).requested_by.username == "root"
    dashboard = client.get("/dashboard/").get_data(as_text=True)
    assert "Installation · started" in dashboard
    executions = client.get("/executions/").get_data(as_text=True)
    assert re.search(r"<td>Installation</td>\s*<td>By hand · root", executions)
    assert "<dt>Started by</dt><dd>By hand · root</dd>" in client.get(f"/runs/{run.id}").get_data(as_text=True)
    jobs = client.get("/jobs/").get_data(as_text=True)
    row = jobs[jobs.index(f'/jobs/{housekeeping.id}"'):]
    assert re.search(r"<td>By installation</td>\s*<td>Installation</td>", row)
