"""The run page: a failed run looks failed and folds its traceback, server paths only for
superadmins, a queued run says what it waits for, notices last as long as the state they
describe, and the breadcrumbs never lead to a page that answers 404."""
import re

import pytest
from flask import g

from tests.factories import csrf_from, make_domain, make_job, make_user
from tests.integration.test_popup import finished_run
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import LogRead, Role, Run, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.runs.present import hide_paths

TRACEBACK = ('Traceback (most recent call last):\n'
             '  File "/srv/firetime/.venv/lib/python3.12/site-packages/webapp/jobtypes/importer.py", line 88, in run\n'
             '    reader.read(path)\n'
             '  File "/srv/firetime/webapp/formats/odm.py", line 12, in read\n'
             "FileNotFoundError: [Errno 2] No such file or directory: '/data/imports/study-a/visit.xml'")
FAILURE = "FileNotFoundError: [Errno 2] No such file or directory: '/data/imports/study-a/visit.xml'"


# --- the one presenter that hides server paths ---------------------------------------------------

@pytest.mark.parametrize("text, hidden", [
    ('File "/srv/app/webapp/x.py", line 3', 'File "…/x.py", line 3'),
    ("No such file: '/data/imports/study-a/visit.xml'", "No such file: '…/visit.xml'"),
    ("/tmp/a.csv and /var/lib/firetime/files/7/out.csv", "…/a.csv and …/out.csv"),
    ("see https://example.org/a/b/c.html", "see https://example.org/a/b/c.html"),  # a URL stays
    ("relative/path/stays.txt", "relative/path/stays.txt"),
    ("3/4 done, 50/100 rows", "3/4 done, 50/100 rows"),
    ("/root", "/root"),  # one part says nothing of the layout
    ("", ""),
])
def test_hide_paths_keeps_the_file_name_and_drops_where_it_lives(text, hidden):
    assert hide_paths(text) == hidden
    assert hide_paths(text, show=True) == text


# --- a failed run ---------------------------------------------------------------------------------

@pytest.fixture
def failed_run(ctx):
    """A run that failed as the runner records an exception: the error line, then its traceback."""
    domain = make_domain()
    messages = {1: "Importing visit.xml", 2: FAILURE, 3: TRACEBACK}
    levels = {1: "info", 2: "error", 3: "debug"}
    return finished_run(job=make_job(name="Import A", domain=domain), lines=3, status=RunStatus.FAILED,
                        level_of=levels.get, message_of=messages.get, message=FAILURE, error_count=1)


def test_a_failed_run_looks_failed_and_folds_its_traceback(failed_run, client, login_as):
    login_as(make_user())
    body = client.get(f"/runs/{failed_run.id}").get_data(as_text=True)
    assert re.search(r'<div class="run-state state-failed">', body)  # red bar and red state (runs.css)
    assert '<span id="run-status-label" class="state-label">Failed</span>' in body
    assert '<p class="run-message error" id="run-message">' in body
    folded = re.search(r'<details class="traceback" id="run-traceback">\s*<summary>Traceback', body)
    assert folded and "<details open" not in body
    assert "line 88, in run" in body


def test_server_paths_show_to_superadmins_only(failed_run, client, login_as):
    admin = make_user(Role.DOMAIN_ADMIN, domain=failed_run.job.domain)
    login_as(admin)
    for url in (f"/runs/{failed_run.id}", f"/runs/{failed_run.id}/popup", f"/runs/{failed_run.id}/log.txt"):
        body = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
        assert "/srv/firetime" not in body and "/data/imports" not in body, url
        assert "…/importer.py" in body or url.endswith("/popup"), url
        assert "…/visit.xml" in body, url
    client.post("/logout", data={"csrf_token": csrf_from(client.get(f"/runs/{failed_run.id}"))})
    g.pop("csrf_token", None)

    login_as(make_user(Role.SUPERADMIN))
    body = client.get(f"/runs/{failed_run.id}").get_data(as_text=True)
    assert "/srv/firetime/webapp/formats/odm.py" in body and "/data/imports/study-a/visit.xml" in body


def test_a_run_page_has_complete_breadcrumbs_and_a_deleted_job_is_not_a_link(ctx, client, login_as):
    login_as(make_user())
    run = finished_run(job=make_job(name="Nightly export"), lines=1)
    body = client.get(f"/runs/{run.id}").get_data(as_text=True)
    crumbs = re.search(r'<nav class="crumbs" aria-label="Breadcrumb">(.*?)</nav>', body, re.S).group(1)
    assert re.findall(r">([^<>]+)</(?:a|span)>", crumbs) == ["Jobs", "Nightly export", f"Run #{run.id}"]
    assert f'href="/jobs/{run.job_id}"' in crumbs and 'aria-current="page"' in crumbs
    assert re.search(r'<a href="/executions/" aria-current="page">', body)  # where the user is

    run.job.deleted_at = utcnow()
    db.session.commit()
    assert client.get(f"/jobs/{run.job_id}").status_code == 404
    body = client.get(f"/runs/{run.id}").get_data(as_text=True)
    crumbs = re.search(r'<nav class="crumbs" aria-label="Breadcrumb">(.*?)</nav>', body, re.S).group(1)
    assert f'href="/jobs/{run.job_id}"' not in body
    assert "Nightly export</span> <small class=\"muted\">(deleted)</small>" in crumbs


# --- what a queued run waits for ---------------------------------------------------------------

def waiting_note(client, run_id) -> str:
    body = client.get(f"/runs/{run_id}").get_data(as_text=True)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", re.search(r'<p class="run-note run-waiting">(.*?)</p>', body,
                                                              re.S).group(1))).strip()


def test_a_queued_run_says_which_run_of_its_job_it_waits_behind(ctx, client, login_as, redis_server):
    user = make_user()
    login_as(user)
    job = make_job()
    first = dispatch.request_run(job, user=user)
    second = dispatch.request_run(job, user=user)
    third = dispatch.request_run(job, user=user)
    assert waiting_note(client, second.id) == f"Waiting behind run #{first.id} of the same job: a job never runs twice at once."
    assert waiting_note(client, third.id).startswith(f"Waiting behind run #{second.id} ")
    body = client.get(f"/runs/{second.id}").get_data(as_text=True)
    assert f'<a href="/runs/{first.id}" data-log-popup="{first.id}">run #{first.id}</a>' in body


def test_a_queued_run_says_its_queue_and_position(ctx, client, login_as, redis_server):
    user = make_user()
    login_as(user)
    runs = [dispatch.request_run(make_job(), user=user) for _ in range(3)]
    assert [waiting_note(client, run.id) for run in runs] == [
        f"Waiting for a free worker on queue default, position {n}." for n in (1, 2, 3)]


def test_with_redis_down_the_position_is_unknown_and_the_page_still_answers(ctx, client, login_as, redis_server):
    user = make_user()
    login_as(user)
    run = dispatch.request_run(make_job(), user=user)
    redis_server.stop()
    try:
        response = client.get(f"/runs/{run.id}")
        assert response.status_code == 200
        assert waiting_note(client, run.id) == ("Waiting for a free worker on queue default; "
                                                "its position is unknown now (Redis does not answer).")
    finally:
        redis_server.start()


# --- notices that last as long as their state ---------------------------------------------------

def test_asked_to_stop_shows_while_the_run_stops_and_never_after(ctx, client, login_as, redis_server):
    user = make_user()
    login_as(user)
    run = Run(job_id=make_job().id, trigger=Trigger.HAND, status=RunStatus.IN_PROGRESS, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    token = csrf_from(client.get(f"/runs/{run.id}"))
    answer = client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    body = answer.get_data(as_text=True)
    assert 'id="run-stopping">Asked to stop at' in body and 'class="flash' not in body

    # The job stops; the page, and the status panel HTMX reloads, no longer say it is asked to.
    db.session.execute(db.update(Run).where(Run.id == run.id).values(status=RunStatus.CANCELLED, finished_at=utcnow(),
                                                                     message="Cancelled on request."))
    db.session.commit()
    for url in (f"/runs/{run.id}", f"/runs/{run.id}/status"):
        body = client.get(url).get_data(as_text=True)
        assert "Asked to stop" not in body and "Cancelled" in body


def test_cancelling_a_finished_run_says_so_once(ctx, client, login_as):
    login_as(make_user())
    run = finished_run(lines=1)
    token = csrf_from(client.get(f"/runs/{run.id}"))
    body = client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert "The run had already ended when the cancel arrived." in body
    assert "already ended" not in client.get(f"/runs/{run.id}").get_data(as_text=True)


def test_the_status_panel_marks_a_finished_log_read_for_its_watcher(ctx, client, login_as):
    watcher = make_user()
    login_as(watcher)
    run = finished_run(lines=9)
    client.get(f"/runs/{run.id}/status", headers={"HX-Request": "true"})
    assert db.session.get(LogRead, (watcher.id, run.id)).lines_read == 9


def test_a_queued_run_says_its_queue_is_paused_or_whose_turn_it_is_on_a_serial_queue(ctx, client, login_as,
                                                                                     redis_server):
    from webapp.execution import queues

    user = make_user()
    login_as(user)
    queues.pause("default", user, "upgrade")
    held = dispatch.request_run(make_job(), user=user)
    assert waiting_note(client, held.id) == "Waiting for queue default to be resumed: it is paused (queues page)."
    first = dispatch.request_run(make_job(job_type="tests.serial_step", params={}), user=user)
    second = dispatch.request_run(make_job(job_type="tests.serial_step", params={}), user=user)
    assert waiting_note(client, second.id) == (f"Waiting for its turn on the serial queue tests-serial, behind "
                                               f"run #{first.id}: it runs one run at a time.")


def test_statistics_with_a_list_of_records_show_as_a_table(ctx, client, login_as):
    from webapp.models.types import utcnow

    user = make_user()
    login_as(user)
    run = dispatch.request_run(make_job(), user=user)
    run.status, run.finished_at = RunStatus.SUCCEEDED, utcnow()
    run.stats = {"files_imported": 1, "files": [{"file": "a.xml", "values_inserted": 12},
                                                {"file": "<b>.xml", "error": "truncated"}]}
    db.session.commit()
    body = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "<dt>files_imported</dt><dd>1</dd>" in body
    assert '<caption>Files</caption>' in body
    assert "<th scope=\"col\">values inserted</th>" in body and "<th scope=\"col\">error</th>" in body
    assert "<td>a.xml</td><td>12</td><td></td>" in body
    assert "&lt;b&gt;.xml" in body and "[{" not in body
