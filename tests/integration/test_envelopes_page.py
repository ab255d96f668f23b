"""The envelopes page (S4 "Monitoring jobs and envelopes", issue 11), with the test client on the real
database: the list and its rows, the panels, All jobs, notifications, rollback / cancel / retry and the
reasons they are refused, the processing queue's controls, upload (and the size limit), who sees what,
hostile input; the domain's kind and the linkage settings on the admin pages. Chains run in this process
(webapp.linkage.demo.run_here) except in the last test, which uploads through the page to a real worker."""
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.extensions import db
from webapp.linkage import chain, demo, upload
from webapp.models import AuditEvent, Domain, Role, Run, RunStatus, Trigger
from webapp.models.linkage import Envelope, EnvelopeStatus
from webapp.models.settings import get_setting, set_setting
from webapp.models.types import utcnow

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,first_name,surname,dob,sex,postcode"
GOOD = "\n".join([HEADER, "P1,Anna,Smith,1980-04-02,F,SW1A 1AA", "P2,Bert,Jones,1975-11-30,M,LS1 4AP",
                  "P3,Ana,Smith,02/04/1980,F,SW1A 1AA"]) + "\n"
HX = {"HX-Request": "true"}


@pytest.fixture
def root(ctx):
    return make_user(username="root")


@pytest.fixture
def project(ctx):
    domain = Domain(name="Registry P", kind="linkage")
    db.session.add(domain)
    db.session.commit()
    return domain


def store(project, user, content: str, name="people.csv") -> Envelope:
    return upload.store(user, project, name, io.BytesIO(content.encode()))


def processed(project, user, content: str = GOOD, name="people.csv") -> Envelope:
    envelope = store(project, user, content, name)
    demo.run_here(envelope, user)
    db.session.refresh(envelope)
    return envelope


def text(response) -> str:
    return response.get_data(as_text=True)


def row_of(page: str, envelope_id: int) -> str:
    """The <tbody> of one envelope."""
    match = re.search(rf'<tbody id="env-{envelope_id}".*?</tbody>\s*(?=<tbody id="env-|</table>)', page, re.S)
    assert match, f"no row of envelope #{envelope_id}"
    return match.group(0)


def flashes(client) -> list[str]:
    return re.findall(r'<div class="flash flash-\w+" role="status">(.*?)</div>', text(client.get("/envelopes/")), re.S)


def token(client) -> str:
    return csrf_from(client.get("/envelopes/"))


# --- the list, its rows and the panels ------------------------------------------------------------------

def test_all_envelopes_newest_first_with_status_options_and_panels(app, client, login_as, root, project):
    good = processed(project, root)
    rows = processed(project, root, GOOD.replace("P1,", "P1,").replace("1975-11-30", "31/02/1975")
                     .replace("P3,Ana", "P1,Ana"), "rows.csv")
    corrupt = processed(project, root, "nothing to see here\n", "garbage.csv")
    assert (good.status, rows.status, corrupt.status) == ("success", "errors", "corrupt"), rows.reason
    login_as(root)
    page = text(client.get("/envelopes/"))
    assert [int(i) for i in re.findall(r'<tbody id="env-(\d+)"', page)] == [corrupt.id, rows.id, good.id]

    first = row_of(page, good.id)
    assert "people.csv" in first and "Registry P" in first and ">3<" in first  # records
    assert 'title="The envelope was processed without errors."' in first and ">Success<" in first
    assert f'action="/envelopes/{good.id}/rollback"' in first and "data-confirm=\"Roll back envelope" in first
    assert "Cancel" not in first  # its chain has ended
    report = db.session.scalar(select(Run).where(Run.envelope_id == good.id, Run.args.startswith("step=report")))
    assert report.files and all(f'href="/runs/files/{f.id}" class="env-download" download>{f.name}' in first
                                for f in report.files)

    errors = row_of(page, rows.id)
    assert ">Errors<" in errors and "Notifications" in errors and 'class="env-count"' in errors
    broken = row_of(page, corrupt.id)
    assert ">Corrupt<" in broken and corrupt.reason[:40] in broken
    # A corrupt envelope cannot be rolled back: the button is disabled, the reason its tooltip.
    assert 'title="A corrupt envelope loaded nothing: there is nothing to roll back."' in broken
    assert re.search(r'<button type="button" class="small" disabled aria-describedby="env-\d+-rollback-why">Rollback', broken)

    errored = page.split('id="env-errored-title"')[1].split("</section>")[0]
    assert [int(i) for i in re.findall(r'href="/envelopes/(\d+)"', errored)] == [corrupt.id, rows.id]
    assert "No envelope is being processed." in page
    assert 'hx-trigger="every 30s"' in page  # nothing active: the panels poll slowly


def test_a_row_expands_to_its_jobs_and_a_job_to_its_statistics(app, client, login_as, root, project):
    envelope = processed(project, root)
    runs = chain.runs_of(envelope.id)
    login_as(root)
    closed = text(client.get(f"/envelopes/{envelope.id}", headers=HX))
    assert 'aria-expanded="false"' in closed and "env-runs" not in closed
    opened = text(client.get(f"/envelopes/{envelope.id}?open=1&runs={runs[1].id}", headers=HX))
    assert opened.startswith(f'<tbody id="env-{envelope.id}"') or f'<tbody id="env-{envelope.id}"' in opened[:300]
    assert [step for step in re.findall(r"<td>(validate|load|match|group|report)", opened)] == list(chain.STEPS)
    assert opened.count(">Success<") == 1 + 5  # the envelope and its five jobs
    for run in runs:
        assert f'data-log-popup="{run.id}"' in opened  # each job opens its live log
        assert f'href="/executions/{run.id}/audit"' in opened
    # The job named in ?runs= is drawn open with its statistics; the others closed.
    assert f'id="job-{runs[1].id}-stats"' in opened and f'id="job-{runs[0].id}-stats"' not in opened
    assert "rows_read" in opened and "loaded" in opened
    job = text(client.get(f"/envelopes/runs/{runs[0].id}?open=1", headers=HX))
    assert job.lstrip().startswith(f'<tbody id="job-{runs[0].id}"') and "files" in job and "rows" in job
    # Without JavaScript both addresses are pages, drawn open.
    assert "<h1>Envelope #" in text(client.get(f"/envelopes/{envelope.id}"))
    assert "rows_read" in text(client.get(f"/envelopes/runs/{runs[1].id}"))


def test_notifications_popup_lists_level_step_reason_count_and_first_lines(app, client, login_as, root, project):
    processed(project, root)
    rows = processed(project, root, "\n".join([HEADER, "P1,Anna,Smith,1980-04-02,F,", "Q1,Eve,Stone,31/02/1991,F,",
                                               "Q2,Finn,Hart,1988-08-08,M,"]) + "\n", "rows.csv")
    login_as(root)
    popup = text(client.get(f"/envelopes/{rows.id}/notifications", headers=HX))
    assert f'data-title="Notifications of envelope #{rows.id} (rows.csv)"' in popup
    assert "dob not a date" in popup and "id already in the project" in popup
    assert re.search(r"env-level-error\">error</span></td>\s*<td>load</td>", popup)
    assert re.search(r'class="num">1</td>\s*<td>3</td>', popup)  # one row, line 3 of the file
    page = text(client.get(f"/envelopes/{rows.id}/notifications"))
    assert "<h1>Notifications of envelope" in page and "dob not a date" in page
    refused = upload.record_refused(root, project, "huge.zip", "The file is larger than the limit of 200 MB.")
    popup = text(client.get(f"/envelopes/{refused.id}/notifications", headers=HX))
    assert "Nothing was raised" in popup and "Corrupt: The file is larger than the limit of 200 MB." in popup
    # The envelope's own audit records (its upload here) are a link away.
    history = f"/audit/?object_type=envelope&amp;object_id={rows.id}"
    assert history in text(client.get(f"/envelopes/{rows.id}/notifications", headers=HX))
    audit_page = text(client.get(history.replace("&amp;", "&")))
    assert "rows.csv" in audit_page and "upload" in audit_page


def test_rollback_is_confirmed_audited_and_then_refused_while_it_waits(app, client, login_as, root, project):
    envelope = processed(project, root)
    login_as(root)
    response = client.post(f"/envelopes/{envelope.id}/rollback", data={"csrf_token": token(client)},
                           headers={"Referer": "http://localhost/envelopes/?sort=name&dir=asc"})
    assert response.status_code == 302 and response.headers["Location"] == "/envelopes/?sort=name&dir=asc"
    queued = db.session.scalar(select(Run).where(Run.envelope_id == envelope.id, Run.args.startswith("step=rollback")))
    assert queued.status == RunStatus.QUEUED
    assert any(f"The rollback of envelope #{envelope.id} is queued as job" in f for f in flashes(client))
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "rollback", AuditEvent.object_id == envelope.id))
    assert event.actor_name == "root"
    row = row_of(text(client.get("/envelopes/")), envelope.id)
    assert 'title="Its chain is still running: wait for it to end, or cancel it first."' in row
    assert 'hx-trigger="every 3s"' in row  # a job of it waits: the row follows it
    assert "/cancel" not in row  # a rollback is no chain to cancel
    again = client.post(f"/envelopes/{envelope.id}/rollback", data={"csrf_token": token(client)})
    assert again.status_code == 302
    assert any("is not rolled back: Its chain is still running" in f for f in flashes(client))
    # The rollback runs (here, as a worker would): the envelope is Rolled back, and says so.
    demo._step_here(chain.project_job(project), envelope, "rollback", root)
    db.session.expire_all()
    row = row_of(text(client.get("/envelopes/")), envelope.id)
    assert ">Rolled back<" in row and 'title="It is rolled back already."' in row
    assert client.post(f"/envelopes/{envelope.id}/rollback").status_code == 400  # no CSRF token


def test_an_active_envelope_polls_is_listed_processing_and_can_be_cancelled(app, client, login_as, root, project):
    envelope = upload.receive(root, project, _file(GOOD))  # queued; no worker runs it
    login_as(root)
    page = text(client.get("/envelopes/"))
    row = row_of(page, envelope.id)
    assert ">Success (active)<" in row and 'hx-trigger="every 3s"' in row
    assert f'action="/envelopes/{envelope.id}/cancel"' in row
    assert 'title="Its chain is still running: wait for it to end, or cancel it first."' in row
    processing = page.split('id="env-processing-title"')[1].split("</section>")[0]
    assert f'href="/envelopes/{envelope.id}"' in processing and 'class="env-count">1<' in processing
    assert 'hx-trigger="every 3s"' in page.split('id="env-live"')[1][:200]
    jobs = text(client.get(f"/envelopes/{envelope.id}?open=1", headers=HX))
    assert jobs.count(">Queued<") == 5
    assert client.post(f"/envelopes/{envelope.id}/cancel", data={"csrf_token": token(client)}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Envelope, envelope.id).status == EnvelopeStatus.CANCELLED
    assert {run.status for run in chain.runs_of(envelope.id)} == {RunStatus.CANCELLED}
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "cancel", AuditEvent.object_type == "envelope"))
    row = row_of(text(client.get("/envelopes/")), envelope.id)
    assert ">Cancelled<" in row and "/cancel" not in row and "every 3s" not in row
    client.post(f"/envelopes/{envelope.id}/cancel", data={"csrf_token": token(client)})
    assert any(f"Envelope #{envelope.id} is not cancelled: The envelope is cancelled already." in f
               for f in flashes(client))


def _file(content: str, name="people.csv"):
    from werkzeug.datastructures import FileStorage

    return FileStorage(io.BytesIO(content.encode()), filename=name)


def test_retry_guard_both_ways(app, client, login_as, root, project):
    corrupt = processed(project, root, "nothing to see here\n", "garbage.csv")
    failed = chain.runs_of(corrupt.id)[0]
    assert failed.status == RunStatus.FAILED
    login_as(root)
    job = text(client.get(f"/envelopes/runs/{failed.id}", headers=HX))
    assert f'action="/envelopes/runs/{failed.id}/retry"' in job  # nothing has run against the project since
    later = processed(project, root)
    job = text(client.get(f"/envelopes/runs/{failed.id}", headers=HX))
    reason = f"Job #{chain.runs_of(later.id)[0].id} has run against this project since; retrying could undo its work."
    assert f'title="{reason}"' in job and "disabled" in job
    response = client.post(f"/envelopes/runs/{failed.id}/retry", data={"csrf_token": token(client)})
    assert response.status_code == 302
    assert any(f"Job #{failed.id} is not retried: {reason}" in f for f in flashes(client))
    assert db.session.scalar(select(Run).where(Run.retry_of_id == failed.id)) is None


def test_a_retry_continues_the_chain_and_is_audited(app, client, login_as, root, project):
    envelope = processed(project, root)
    report = chain.runs_of(envelope.id)[-1]
    report.status, report.message = RunStatus.FAILED, "disk full"
    db.session.commit()
    login_as(root)
    response = client.post(f"/envelopes/runs/{report.id}/retry", data={"csrf_token": token(client)},
                           headers={"Referer": "http://localhost/envelopes/?view=jobs"})
    assert response.headers["Location"] == "/envelopes/?view=jobs"
    again = db.session.scalar(select(Run).where(Run.retry_of_id == report.id))
    assert again.args == report.args and again.trigger == Trigger.RETRY and again.envelope_id == envelope.id
    assert any(f"Job #{report.id} is retried as job" in f for f in flashes(client))
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "run_now", AuditEvent.actor_name == "root"))
    job = text(client.get(f"/envelopes/runs/{report.id}", headers=HX))
    assert f'title="It was retried already, as job #{again.id}."' in job


# --- all jobs ---------------------------------------------------------------------------------------------

def test_all_jobs_lists_processing_and_system_runs_queued_first(app, client, login_as, root, project):
    envelope = processed(project, root)
    system = make_job("Purge history", system=True)
    plain = make_job("Nightly import")
    now = utcnow()
    failed = Run(job_id=system.id, trigger=Trigger.PLAN, status=RunStatus.FAILED, started_at=now + timedelta(minutes=1),
                 finished_at=now + timedelta(minutes=2), message="disk full")
    waiting = Run(job_id=system.id, trigger=Trigger.HAND, status=RunStatus.QUEUED)
    other = Run(job_id=plain.id, trigger=Trigger.PLAN, status=RunStatus.FAILED, started_at=now, finished_at=now)
    db.session.add_all([failed, waiting, other])
    db.session.commit()
    login_as(root)
    page = text(client.get("/envelopes/?view=jobs"))
    ids = [int(i) for i in re.findall(r'<tbody id="job-(\d+)"', page)]
    steps = [run.id for run in reversed(chain.runs_of(envelope.id))]
    assert ids == [waiting.id, failed.id] + steps  # waiting first, then newest start first
    assert other.id not in ids
    assert 'aria-current="page">All jobs' in page.replace("\n", "").replace("  ", "")
    assert page.count(">Errors<") == 1 and page.count(">Queued<") == 1 and page.count(">Success<") == 5
    assert f'action="/envelopes/runs/{failed.id}/retry"' in page  # a system job: the executions page's retry
    assert f'<a href="/envelopes/{envelope.id}">#{envelope.id}</a></td>' in page
    fragment = text(client.get("/envelopes/?view=jobs", headers={**HX, "HX-Target": "env-list"}))
    assert fragment.lstrip().startswith('<div id="env-list">') and "Upload an envelope" not in fragment
    response = client.post(f"/envelopes/runs/{failed.id}/retry", data={"csrf_token": token(client)})
    assert response.status_code == 302
    assert db.session.scalar(select(Run).where(Run.retry_of_id == failed.id)).job_id == system.id
    # A queued run polls itself in All jobs; a finished one does not.
    assert 'hx-trigger="every 3s"' in text(client.get(f"/envelopes/runs/{waiting.id}?wide=1", headers=HX))
    assert "every 3s" not in text(client.get(f"/envelopes/runs/{failed.id}?wide=1", headers=HX))


# --- the processing queue -------------------------------------------------------------------------------

def test_pause_resume_and_clear_the_processing_queue_from_the_page(app, client, login_as, root, project):
    envelope = upload.receive(root, project, _file(GOOD))
    login_as(root)
    page = text(client.get("/envelopes/"))
    assert 'action="/queues/processing/pause"' in page and 'action="/queues/processing/clear"' in page
    assert "Clear job queue (5 queued)" in page and "<strong>Running</strong>" in page
    back = {"Referer": "http://localhost/envelopes/?view=jobs"}
    response = client.post("/queues/processing/pause", data={"csrf_token": token(client)}, headers=back)
    assert response.headers["Location"] == "/envelopes/?view=jobs"
    page = text(client.get("/envelopes/"))
    assert "<strong>Paused</strong> by root" in page and 'action="/queues/processing/resume"' in page
    client.post("/queues/processing/resume", data={"csrf_token": token(client)}, headers=back)
    client.post("/queues/processing/clear", data={"csrf_token": token(client)}, headers=back)
    db.session.expire_all()
    assert {run.status for run in chain.runs_of(envelope.id)} == {RunStatus.CANCELLED}
    page = text(client.get("/envelopes/"))
    assert "<strong>Running</strong>" in page and "Clear job queue" not in page


# --- upload -----------------------------------------------------------------------------------------------

def test_upload_through_the_page_queues_the_chain(app, client, login_as, root, project):
    login_as(root)
    page = text(client.get("/envelopes/"))
    assert f'<option selected value="{project.id}">' in page or f'value="{project.id}" selected' in page
    assert "At most 200 MB." in page
    response = client.post("/envelopes/upload", data={"csrf_token": token(client), "project": str(project.id),
                                                      "file": (io.BytesIO(GOOD.encode()), "march.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 302, text(response)
    envelope = db.session.scalar(select(Envelope).where(Envelope.name == "march.csv"))
    assert [chain.step_of(run) for run in chain.runs_of(envelope.id)] == list(chain.STEPS)
    assert any(f"Envelope #{envelope.id} “march.csv” is uploaded to Registry P" in f for f in flashes(client))


@pytest.mark.parametrize("data, field, message", [
    ({}, "file", "Choose a zip envelope or a CSV file to upload."),
    ({"project": "99999999999999999999"}, "project", "Not a valid choice"),
    ({"project": "x"}, "project", "Invalid Choice: could not coerce"),
])
def test_a_refused_upload_says_why_at_its_field(app, client, login_as, root, project, data, field, message):
    login_as(root)
    form = {"csrf_token": token(client), "project": str(project.id), **data}
    response = client.post("/envelopes/upload", data=form, content_type="multipart/form-data")
    assert response.status_code == 400
    assert re.search(rf'<p class="field-error" id="{field}-error">[^<]*{re.escape(message)}', text(response)), text(response)
    assert db.session.scalar(select(Envelope)) is None


def test_an_upload_over_the_limit_is_refused_unread_and_listed_as_corrupt(app, client, login_as, root, project):
    set_setting("envelope_max_mb", 1)
    db.session.commit()
    login_as(root)
    big = io.BytesIO(b"x" * (1024 * 1024 + 10))
    response = client.post("/envelopes/upload", data={"csrf_token": token(client), "project": str(project.id),
                                                      "file": (big, "huge.csv")}, content_type="multipart/form-data")
    assert response.status_code == 413
    refused = db.session.scalar(select(Envelope).where(Envelope.name == "huge.csv"))
    assert (refused.status, refused.path) == (EnvelopeStatus.CORRUPT, "")
    assert re.search(r'id="file-error">The file is larger than the limit of 1 MB\. It is listed as envelope #'
                     rf"{refused.id}\.", text(response))
    assert "At most 1 MB." in text(response)
    # Without a good CSRF token nothing is recorded: the message alone.
    big = io.BytesIO(b"x" * (1024 * 1024 + 10))
    response = client.post("/envelopes/upload", data={"csrf_token": "forged", "project": str(project.id),
                                                      "file": (big, "other.csv")}, content_type="multipart/form-data")
    assert response.status_code == 413 and "The file is larger than the limit of 1 MB." in text(response)
    assert db.session.scalar(select(Envelope).where(Envelope.name == "other.csv")) is None


# --- who sees what ---------------------------------------------------------------------------------------

def _paths(envelope: Envelope, run: Run) -> list[tuple[str, str]]:
    return [("GET", f"/envelopes/{envelope.id}"), ("GET", f"/envelopes/{envelope.id}/notifications"),
            ("GET", f"/envelopes/runs/{run.id}"), ("POST", f"/envelopes/{envelope.id}/rollback"),
            ("POST", f"/envelopes/{envelope.id}/cancel"), ("POST", f"/envelopes/runs/{run.id}/retry")]


@pytest.mark.parametrize("role, sees", [("superadmin", True), ("sysadmin", True), ("admin_p", True),
                                        ("admin_q", False), ("sysadmin_q", False)])
def test_each_role_sees_its_projects_envelopes_only(app, client, login_as, root, project, role, sees):
    other = Domain(name="Registry Q", kind="linkage")
    db.session.add(other)
    db.session.commit()
    envelope = processed(project, root)
    theirs = processed(other, root, GOOD, "theirs.csv")
    user = {"superadmin": lambda: root,
            "sysadmin": lambda: make_user(Role.SYSADMIN, supervised=[project], username="sys"),
            "admin_p": lambda: make_user(Role.DOMAIN_ADMIN, domain=project, username="adminp"),
            "admin_q": lambda: make_user(Role.DOMAIN_ADMIN, domain=other, username="adminq"),
            "sysadmin_q": lambda: make_user(Role.SYSADMIN, supervised=[other], username="sysq")}[role]()
    login_as(user)
    page = text(client.get("/envelopes/"))
    listed = {int(i) for i in re.findall(r'<tbody id="env-(\d+)"', page)}
    assert (envelope.id in listed) == sees
    assert (theirs.id in listed) == (role in ("superadmin", "admin_q", "sysadmin_q"))
    projects = re.findall(r'<option[^>]*value="(\d+)"', page.split('id="project"')[1].split("</select>")[0])
    assert (str(project.id) in projects) == sees
    jobs = text(client.get("/envelopes/?view=jobs"))
    run = chain.runs_of(envelope.id)[0]
    assert (f'<tbody id="job-{run.id}"' in jobs) == sees
    if not sees:
        csrf = token(client)
        for method, path in _paths(envelope, run):
            assert client.open(path, method=method, data={"csrf_token": csrf}).status_code == 404, path
        assert client.get(f"/executions/{run.id}/audit", headers=HX).status_code == 404
    else:
        assert client.get(f"/envelopes/{envelope.id}/notifications").status_code == 200
        audit = text(client.get(f"/executions/{run.id}/audit", headers=HX))
        assert "Audit of run" in audit
    # Pause, resume and clear are for those who steer queues.
    assert ('action="/queues/processing/pause"' in page) == (role in ("superadmin", "sysadmin", "sysadmin_q"))


def test_hostile_input_gets_an_answer_never_a_500(app, client, login_as, root, project):
    envelope = processed(project, root)
    login_as(root)
    unknown = client.get("/envelopes/?view=%3Cscript%3E")
    assert unknown.status_code == 200 and "There is no such view: all envelopes are shown." in text(unknown)
    assert "<script>" not in text(unknown)
    for path in ("/envelopes/?page=99999999999999999999999", "/envelopes/?page=-3&sort=evil&dir=sideways",
                 "/envelopes/?view=jobs&page=abc", f"/envelopes/{envelope.id}?open=1&runs=1,x,-2,99999999999999,٣",
                 f"/envelopes/{envelope.id}?runs=" + ",".join(["1"] * 500)):
        assert client.get(path, headers=HX).status_code == 200, path
        assert client.get(path).status_code == 200, path
    for path in ("/envelopes/99999999999999999999", "/envelopes/0", "/envelopes/2147483647/notifications",
                 "/envelopes/runs/2147483647", "/envelopes/01"):
        assert client.get(path).status_code == 404, path


# --- admin: the domain's kind and the linkage settings ---------------------------------------------------

def test_a_domain_is_made_a_linkage_project_on_the_domains_page(app, client, login_as, root):
    login_as(root)
    csrf = csrf_from(client.get("/admin/domains"))
    assert client.post("/admin/domains", data={"csrf_token": csrf, "name": "Registry N", "kind": "linkage"}).status_code == 302
    made = db.session.scalar(select(Domain).where(Domain.name == "Registry N"))
    assert made.kind == "linkage"
    assert "linkage project" in text(client.get("/admin/domains"))
    assert [p.name for p in db.session.scalars(select(Domain).where(Domain.kind == "linkage"))] == ["Registry N"]
    # The envelopes page offers it for uploads.
    assert f'value="{made.id}"' in text(client.get("/envelopes/"))
    # A save that does not send the kind keeps it; a bad kind is told at the field.
    assert client.post(f"/admin/domains/{made.id}", data={"csrf_token": csrf, "name": "Registry N"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Domain, made.id).kind == "linkage"
    refused = client.post(f"/admin/domains/{made.id}", data={"csrf_token": csrf, "name": "Registry N", "kind": "x"})
    assert refused.status_code == 400 and 'id="kind-error">Not a valid choice' in text(refused)
    # With an envelope it stays a linkage project.
    store(made, root, GOOD)
    refused = client.post(f"/admin/domains/{made.id}", data={"csrf_token": csrf, "name": "Registry N", "kind": "clinical"})
    assert refused.status_code == 400
    assert 'id="kind-error">It holds 1 envelope: a linkage project with envelopes stays one.' in text(refused)
    assert "It holds 1 envelope of person records." in text(client.get(f"/admin/domains/{made.id}"))
    # Without envelopes it may change back, audited.
    empty = make_domain("Registry E")
    client.post(f"/admin/domains/{empty.id}", data={"csrf_token": csrf, "name": "Registry E", "kind": "linkage"})
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "domain", AuditEvent.object_id == empty.id))
    assert (event.action, event.before["kind"], event.after["kind"]) == ("edit", "clinical", "linkage")


def test_linkage_settings_are_stored_audited_and_bounded(app, client, login_as, root, project):
    login_as(root)
    page = text(client.get("/admin/settings"))
    assert 'value="200"' in page and 'value="0.9"' in page and "Train the model (EM)" in page
    assert re.search(r'<input [^>]*checked id="linkage_train" name="linkage_train" type="checkbox"', page)
    base = {"csrf_token": csrf_from(client.get("/admin/settings")), "retention_days": "30", "support_roles": ["superadmin"],
            "script_time_limit": "600", "script_memory_mb": "512", "report_sender": "jobs@example.org",
            "base_url": "https://jobs.example.org"}
    response = client.post("/admin/settings", data={**base, "envelope_max_mb": "500", "linkage_threshold": "0.95",
                                                    "linkage_backend": "spark"})  # the box unticked
    assert response.status_code == 302
    assert (get_setting("envelope_max_mb"), get_setting("linkage_threshold"), get_setting("linkage_train"),
            get_setting("linkage_backend")) == (500, 0.95, False, "spark")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "setting"))
    assert event.after["linkage_train"] is False and event.before["linkage_threshold"] == 0.9
    assert "At most 500 MB." in text(client.get("/envelopes/"))
    for field, value, message in (("envelope_max_mb", "0", "from 1 to 10240"), ("envelope_max_mb", "10241", "from 1 to 10240"),
                                  ("linkage_threshold", "0.4", "from 0.5 to 0.999"), ("linkage_threshold", "1", "from 0.5 to 0.999"),
                                  ("linkage_threshold", "nan", "from 0.5 to 0.999"), ("linkage_threshold", "", "Give a probability"),
                                  ("linkage_backend", "hadoop", "Not a valid choice")):
        data = {**base, "envelope_max_mb": "500", "linkage_threshold": "0.95", "linkage_backend": "duckdb",
                "linkage_train": "y", field: value}
        response = client.post("/admin/settings", data=data)
        assert response.status_code == 400, (field, value)
        assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', text(response)), (field, value)
    db.session.expire_all()
    assert get_setting("linkage_backend") == "spark"


# --- through a real worker -------------------------------------------------------------------------------

def test_an_upload_through_the_page_goes_success_with_a_real_worker(app, client, login_as, root, project, worker):
    login_as(root)
    client.post("/envelopes/upload", data={"csrf_token": token(client), "project": str(project.id),
                                           "file": (io.BytesIO(GOOD.encode()), "worker.csv")},
                content_type="multipart/form-data")
    envelope_id = db.session.scalar(select(Envelope.id).where(Envelope.name == "worker.csv"))

    def ended():
        db.session.expire_all()  # the client's requests share this test's session (the ctx fixture's app context)
        row = row_of(text(client.get("/envelopes/")), envelope_id)
        return ">Success<" in row and "every 3s" not in row
    wait_for(ended, 240, 0.5, "the envelope's Success")
    jobs = text(client.get(f"/envelopes/{envelope_id}?open=1", headers=HX))
    assert jobs.count(">Success<") == 6  # the envelope and its five jobs
    load = chain.runs_of(envelope_id)[1]
    stats = text(client.get(f"/envelopes/runs/{load.id}?open=1", headers=HX))
    assert "rows_read" in stats and load.worker_name and load.worker_name in stats
    assert worker.proc.poll() is None
