"""A list page makes as many SQL statements with 30 rows as with 3: what a row shows of a
related object (a job's domain, a run's requester and files) is loaded with the page, not once
per row. Each row here has related objects of its own, so no row is served from another's."""
from contextlib import contextmanager
from itertools import count
from types import SimpleNamespace

import pytest
from sqlalchemy import event
from werkzeug.security import generate_password_hash

from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import ApiToken, Domain, Role, Run, RunFile, RunStatus, Trigger

_n = count(1)


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


@contextmanager
def statements(app):
    """The SQL statements sent to the database meanwhile."""
    sent = []

    def note(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _run(job_id) -> Run:
    """A finished run asked for by a user of its own, with an output file."""
    requester = make_user(Role.SYSTEM, username=f"requester-{next(_n)}")
    run = Run(job_id=job_id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED, requested_by_id=requester.id)
    db.session.add(run)
    db.session.flush()
    db.session.add(RunFile(run_id=run.id, job_id=job_id, name=f"out-{run.id}.csv", path=f"runs/{run.id}/out.csv"))
    return run


def add_rows(app, study_id, focus_id, rows):
    """`rows` more jobs in Study (each in a site of its own, with a run) and `rows` more runs of the focus job."""
    with app.app_context():
        study = db.session.get(Domain, study_id)
        for _ in range(rows):
            job = make_job(f"Job {next(_n)}", domain=make_domain(f"Site {next(_n)}", parent=study))
            _run(job.id)
            _run(focus_id)
        db.session.commit()


@pytest.fixture
def estate(app, login_as):
    """A domain administrator of Study, signed in and with an API token, and the job whose page
    and runs are measured."""
    with app.app_context():
        study = make_domain("Study")
        admin = make_user(Role.DOMAIN_ADMIN, domain=study, username="study-admin")
        focus = make_job("Focus job", domain=study)
        _, token = ApiToken.issue(admin)
        db.session.commit()
        ids = study.id, focus.id
    client = login_as(SimpleNamespace(username="study-admin"))
    return client, {"Authorization": f"Bearer {token}"}, ids


def test_list_pages_make_as_many_statements_with_30_rows_as_with_3(app, estate):
    client, api_headers, (study_id, focus_id) = estate
    pages = {
        "jobs list": ("/jobs/", {}),
        "job page": (f"/jobs/{focus_id}?tab=executions", {}),  # the tab that lists runs
        "API jobs": ("/api/scheduled-jobs", api_headers),
        "API runs": (f"/api/scheduled-jobs/{focus_id}/runs", api_headers),
    }
    counted, shown = {}, {}
    for rows in (3, 30):
        add_rows(app, study_id, focus_id, rows - (3 if rows == 30 else 0))
        for name, (url, headers) in pages.items():
            client.get(url, headers=headers)  # once before, so that nothing first-time is counted
            with statements(app) as sent:
                response = client.get(url, headers=headers)
            assert response.status_code == 200, (name, response.get_data(as_text=True)[:300])
            counted[name, rows] = len(sent)
            shown[name, rows] = response
    assert {name: counted[name, 30] for name in pages} == {name: counted[name, 3] for name in pages}

    # The pages did show the rows and what they relate to.
    for rows in (3, 30):
        jobs_list = shown["jobs list", rows].get_data(as_text=True)
        assert jobs_list.count('<tr id="job-') == min(rows + 1, 25)  # the focus job too; 25 a page
        assert jobs_list.count("<td>Site ") == min(rows, 24)  # each job's own domain
        job_page = shown["job page", rows].get_data(as_text=True)
        assert job_page.count("· requester-") == min(rows, 25)
        api_runs = shown["API runs", rows].get_json()
        assert len(api_runs) == rows and all(run["runBy"].startswith("requester-") and len(run["files"]) == 1
                                             for run in api_runs)
        api_jobs = shown["API jobs", rows].get_json()
        assert sorted(job["domain"].split()[0] for job in api_jobs) == ["Site"] * rows + ["Study"]
