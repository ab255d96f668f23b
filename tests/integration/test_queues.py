"""The queues page: each queue's running, waiting and planned entries, seen per role, sorted,
filtered and paged on the server, live fragments, cancel per entry, and the workers panel."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.factories import csrf_from, make_domain, make_job, make_user
from tests.integration.test_query_counts import statements
from webapp.extensions import db, redis_client
from webapp.models import AuditEvent, Job, Role, Run, RunStatus, Trigger
from webapp.models.types import utcnow


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


def _run(job, status, **extra):
    now = utcnow()
    values = dict(job_id=job.id, trigger=Trigger.HAND, status=status, created_at=now)
    if status == RunStatus.IN_PROGRESS:
        values.update(started_at=now, enqueued_at=now)
    values.update(extra)
    run = Run(**values)
    db.session.add(run)
    db.session.commit()
    return run


@pytest.fixture
def estate(ctx):
    """Study A and Study B, a self-test job in each (default queue) with a running run, a run
    waiting behind it and a planned next fire; a housekeeping job on the system queue."""
    a, b = make_domain("Study A"), make_domain("Study B")
    users = {"root": make_user(Role.SUPERADMIN, username="root"),
             "sys": make_user(Role.SYSADMIN, username="sys"),
             "admin_a": make_user(Role.DOMAIN_ADMIN, domain=a, username="admin-a"),
             "admin_b": make_user(Role.DOMAIN_ADMIN, domain=b, username="admin-b")}
    soon = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    later = soon + timedelta(minutes=5)
    jobs = {"a": make_job("Import A", domain=a, next_fire_at=soon,
                          plan={"kind": "interval", "every": 2, "unit": "hours", "anchor": soon.isoformat()}),
            "b": make_job("Import B", domain=b, next_fire_at=later,
                          plan={"kind": "interval", "every": 2, "unit": "hours", "anchor": later.isoformat()})}
    runs = {"a_running": _run(jobs["a"], RunStatus.IN_PROGRESS, progress=40, progress_message="Rows",
                              worker_name="w-1"),
            "a_waiting": _run(jobs["a"], RunStatus.QUEUED),
            "b_running": _run(jobs["b"], RunStatus.IN_PROGRESS, worker_name="w-2"),
            "b_waiting": _run(jobs["b"], RunStatus.QUEUED)}
    return {"users": users, "jobs": jobs, "runs": runs, "ids": {k: r.id for k, r in runs.items()},
            "job_ids": {k: j.id for k, j in jobs.items()}}


def _text(response):
    return response.get_data(as_text=True)


def test_superadmin_sees_every_queue_and_entry(estate, login_as):
    client = login_as(estate["users"]["root"])
    page = _text(client.get("/queues/"))
    for queue in ("default", "system", "mail"):
        assert f'id="queue-{queue}"' in page
    ids = estate["ids"]
    for key in ("a_running", "a_waiting", "b_running", "b_waiting"):
        assert f">#{ids[key]}<" in page
    assert "Import A" in page and "Import B" in page
    assert "of other domains" not in page
    assert f"Run <a href=\"/runs/{ids['a_running']}\">#{ids['a_running']}</a> of the same job" in page
    assert "40 %" in page  # the database's progress (no live state in Redis for this run)
    assert 'aria-current="page">Queues<' in page
    from webapp.execution.queues import names

    assert page.count("No worker serves this queue") == len(names())  # no worker runs in this test


def test_domain_admin_sees_own_domain_and_a_count_of_others(estate, login_as):
    client = login_as(estate["users"]["admin_a"])
    page = _text(client.get("/queues/"))
    ids = estate["ids"]
    assert f">#{ids['a_running']}<" in page and f">#{ids['a_waiting']}<" in page
    assert f">#{ids['b_running']}<" not in page and "Import B" not in page
    default = page.split('id="queue-default"')[1].split("<section", 1)[0]
    assert default.count("and 1 of other domains") == 3  # running, waiting, planned


def test_sysadmin_without_supervised_domains_sees_only_counts(estate, login_as):
    page = _text(login_as(estate["users"]["sys"]).get("/queues/"))
    assert "Import A" not in page and "Import B" not in page
    assert "(0 and 2 of other domains)" in page


def test_an_empty_list_has_plain_headings_until_it_holds_entries_or_is_filtered(estate, login_as, ctx):
    """A list empty for everyone (most lists of most queues) is shown without sort links or a
    filter row; one with entries has both; a filter that found nothing keeps them, so that the
    filter can be changed."""
    client = login_as(estate["users"]["root"])
    page = _text(client.get("/queues/"))
    empty = page.split('id="q-system-waiting"')[1].split('id="q-system-planned"')[0]
    assert "Nothing waiting." in empty
    assert '<tr class="queue-filters">' not in empty and "Apply Filter" not in empty
    assert '<a href="/queues/?sort=' not in empty  # the polling URL keeps its sort; headings have no links
    assert '<th scope="col">Job</th>' in empty
    busy = page.split('id="q-default-waiting"')[1].split('id="q-default-planned"')[0]
    assert '<tr class="queue-filters">' in busy and '<a href="/queues/?sort=job' in busy
    assert f">#{estate['ids']['a_waiting']}<" in busy

    filtered = _text(client.get("/queues/?queue=system&list=waiting&f_job=nothing-like-it"))
    focused = filtered.split('id="q-system-waiting"')[1].split('id="q-system-planned"')[0]
    assert "Nothing matches these filters." in focused
    assert 'name="f_job" value="nothing-like-it"' in focused


def test_sort_filter_and_paging_of_one_list_are_in_the_url(estate, login_as, ctx):
    jobs = [make_job(f"Bulk {n:02d}", next_fire_at=utcnow() + timedelta(minutes=n)) for n in range(1, 13)]
    client = login_as(estate["users"]["root"])
    first = _text(client.get("/queues/"))
    planned = first.split('id="q-default-planned"')[1]
    assert planned.index("Bulk 01") < planned.index("Bulk 02")
    assert "Bulk 12" not in planned  # ten a page
    second = _text(client.get("/queues/?queue=default&list=planned&sort=next&dir=asc&page=2"))
    assert "Bulk 12" in second.split('id="q-default-planned"')[1]
    by_name = _text(client.get("/queues/?queue=default&list=planned&sort=job&dir=desc"))
    part = by_name.split('id="q-default-planned"')[1]
    assert part.index("Import B") < part.index("Import A") < part.index("Bulk 12")
    assert 'aria-sort="descending"' in part
    filtered = _text(client.get("/queues/?queue=default&list=planned&f_job=bulk+0&f_domain=install"))
    part = filtered.split('id="q-default-planned"')[1]
    assert "Bulk 09" in part and "Bulk 10" not in part and "Import A" not in part
    assert 'value="bulk 0"' in part
    running = _text(client.get("/queues/?queue=default&list=running&f_domain=Study+B"))
    part = running.split('id="q-default-running"')[1].split('id="q-default-waiting"')[0]
    assert "Import B" in part and "Import A" not in part
    bad = client.get("/queues/?queue=default&list=running&f_started=yesterday&f_progress=900&f_run=x")
    assert bad.status_code == 200
    assert "is not a day" in _text(bad) and "is not a number from 0 to 100" in _text(bad)
    assert len(jobs) == 12


def test_live_fragment_is_the_list_alone_with_its_state(estate, login_as):
    client = login_as(estate["users"]["admin_a"])
    response = client.get("/queues/?queue=default&list=running&sort=run&dir=desc",
                          headers={"HX-Request": "true", "HX-Target": "q-default-running"})
    body = _text(response)
    assert response.status_code == 200 and "<html" not in body
    assert body.startswith('\n<div id="q-default-running"') or 'id="q-default-running"' in body[:200]
    assert 'hx-trigger="every 3s"' in body and "sort=run" in body and "dir=desc" in body
    assert "Import A" in body and "Import B" not in body
    missing = client.get("/queues/?queue=nope&list=running", headers={"HX-Request": "true", "HX-Target": "q-nope-running"})
    assert missing.status_code == 404


def _cancel(client, url, **data):
    page = client.get("/queues/")
    return client.post(url, data={"csrf_token": csrf_from(page), **data}, headers={"Referer": "http://localhost/queues/"},
                       follow_redirects=True)


def test_cancel_a_waiting_run_records_who_and_audits(estate, login_as, ctx):
    client = login_as(estate["users"]["admin_a"])
    run_id = estate["ids"]["a_waiting"]
    page = _text(_cancel(client, f"/queues/runs/{run_id}/cancel", was="queued"))
    assert f"Run #{run_id} of Import A is cancelled" in page
    run = db.session.get(Run, run_id)
    db.session.refresh(run)
    assert run.status == RunStatus.CANCELLED and "admin-a" in run.message
    again = _text(_cancel(client, f"/queues/runs/{run_id}/cancel", was="queued"))
    assert "had already ended (cancelled)" in again
    audits = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "run", AuditEvent.object_id == run_id,
                                                         AuditEvent.action == "cancel")).all()
    assert len(audits) == 1  # the second click records nothing


def test_cancel_a_running_run_asks_it_to_stop(estate, login_as, ctx):
    client = login_as(estate["users"]["root"])
    run_id = estate["ids"]["b_running"]
    page = _text(_cancel(client, f"/queues/runs/{run_id}/cancel", was="in_progress"))
    assert f"Run #{run_id} of Import B is asked to stop" in page
    assert redis_client.conn.get(f"firetime:run:{run_id}:cancel") == b"1"
    again = _text(_cancel(client, f"/queues/runs/{run_id}/cancel", was="in_progress"))
    assert "was already asked to stop" in again


@pytest.mark.parametrize("key, was, now, answer", [
    ("a_waiting", "queued", RunStatus.IN_PROGRESS, "had just started when the cancel arrived: it is asked to stop"),
    ("a_running", "in_progress", RunStatus.SUCCEEDED, "had already ended (succeeded)"),
])
def test_cancel_of_an_entry_that_just_started_or_ended(estate, login_as, ctx, key, was, now, answer):
    """The page showed the run waiting (running); it started (ended) before the click arrived."""
    client = login_as(estate["users"]["root"])
    run = estate["runs"][key]
    run.status = now
    run.started_at = run.started_at or utcnow()
    run.finished_at = utcnow() if now == RunStatus.SUCCEEDED else None
    db.session.commit()
    response = _cancel(client, f"/queues/runs/{run.id}/cancel", was=was)
    assert response.status_code == 200
    assert answer in _text(response)


def test_skip_a_planned_occurrence(estate, login_as, ctx):
    client = login_as(estate["users"]["admin_a"])
    job = estate["jobs"]["a"]
    at = job.next_fire_at
    page = _text(_cancel(client, f"/queues/jobs/{job.id}/skip", at=at.isoformat()))
    assert "is skipped. Its next occurrence is" in page
    skipped = db.session.scalar(select(Run).where(Run.job_id == job.id, Run.status == RunStatus.SKIPPED))
    assert skipped.occurrence_at == at and skipped.message == "Skipped by admin-a."
    db.session.refresh(job)
    assert job.next_fire_at == at + timedelta(hours=2)
    # The page still showed the old occurrence: the second click skips nothing more.
    again = _text(_cancel(client, f"/queues/jobs/{job.id}/skip", at=at.isoformat()))
    assert "has fired or moved meanwhile: nothing skipped" in again
    assert db.session.scalar(select(Run.id).where(Run.job_id == job.id, Run.status == RunStatus.SKIPPED,
                                                  Run.id != skipped.id)) is None


def test_entries_of_other_domains_answer_404(estate, login_as):
    client = login_as(estate["users"]["admin_a"])
    page = client.get("/queues/")
    token = csrf_from(page)
    assert client.post(f"/queues/runs/{estate['ids']['b_waiting']}/cancel", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/queues/jobs/{estate['job_ids']['b']}/skip", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/queues/runs/{estate['ids']['a_waiting']}/cancel", data={}).status_code == 400  # no CSRF


def test_anonymous_is_sent_to_sign_in(estate, client):
    for url in ("/queues/", "/queues/workers"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_statements_do_not_grow_with_rows(estate, login_as, app):
    client = login_as(estate["users"]["admin_a"])
    domain_id = estate["jobs"]["a"].domain_id

    def add(rows):
        with app.app_context():
            for _ in range(rows):
                job = make_job(domain=db.session.get(Job, estate["job_ids"]["a"]).domain,
                               next_fire_at=utcnow() + timedelta(hours=3))
                _run(job, RunStatus.IN_PROGRESS)
                _run(job, RunStatus.QUEUED)
                _run(job, RunStatus.QUEUED, enqueued_at=utcnow())

    add(1)
    client.get("/queues/")
    with statements(app) as few:
        client.get("/queues/")
    add(8)
    with statements(app) as many:
        client.get("/queues/")
    assert len(many) == len(few), (len(few), len(many))
    assert domain_id


def test_runs_handed_to_rq_show_their_position_there(ctx, login_as):
    from webapp.execution import dispatch

    user = make_user(Role.SUPERADMIN, username="root")
    first = dispatch.request_run(make_job("First in line"))
    second = dispatch.request_run(make_job("Second in line"))
    held = dispatch.request_run(first.job)  # behind the first, in the database
    page = login_as(user).get("/queues/?queue=default&list=waiting&sort=position")
    waiting = page.get_data(as_text=True).split('id="q-default-waiting"')[1].split('id="q-default-planned"')[0]
    rows = waiting.split("<tbody>")[1].split("</tr>")
    assert f"#{first.id}<" in rows[0] and "A free worker (position 1)" in rows[0]
    assert f"#{second.id}<" in rows[1] and "A free worker (position 2)" in rows[1]
    assert f"#{held.id}<" in rows[2] and f'Run <a href="/runs/{first.id}">#{first.id}</a> of the same job' in rows[2]
