"""S0's Import jobs and Export jobs pages as an administrator reads them: the jobs list of one
type with that type's columns, a find box matching what S0 says for each list, a New button that
opens the job form with the type and its default plan chosen; the import form's directory (its
path only for those who may see server paths) and its errors next to the field; and the domain's
OID (StudyOID) on the domains page."""
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import current_app
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from tests.factories import csrf_from, make_domain, make_job, make_user
from tests.integration.test_job_editing import (  # noqa: F401  (_quick_password_hashes: an autouse fixture)
    _quick_password_hashes, error_next_to, field_block, html, options_of, value_of)
from webapp.extensions import db
from webapp.jobtypes import registry
from webapp.models import AuditEvent, Dataset, Domain, Job, Role
from webapp.models.types import utcnow
from webapp.scheduling import sync

IMPORT, EXPORT = "import_data", "export_dataset"


@pytest.fixture
def study(ctx):
    study = make_domain("Study A")
    study.oid = "STUDY-A"
    site = make_domain("Site A1", parent=study)
    site.oid = "STUDY-A-SITE-A1"
    db.session.commit()
    return study


@pytest.fixture
def root(ctx, login_as):
    return login_as(make_user(Role.SUPERADMIN, username="root"))


@pytest.fixture
def import_dir(ctx):
    base = Path(current_app.config["IMPORT_DIR"])
    base.mkdir(parents=True, exist_ok=True)
    made = []

    def folder(name):
        path = base / name
        path.mkdir(parents=True, exist_ok=True)
        made.append(path)
        return path

    yield folder
    for path in made:
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            path.rmdir()


@pytest.fixture
def export_type(app):
    """The export job type (a stand-in with its key and parameters where none is installed)."""
    if registry.is_known(EXPORT):
        yield registry.get(EXPORT)
        return

    class Params(Schema):
        dataset = fields.Integer(required=True, metadata={"label": "Dataset"})
        format = fields.String(load_default="csv", validate=validate.OneOf(["csv", "tsv", "json", "odm"]))

    yield registry.register(registry.JobType(key=EXPORT, label="Export dataset", run=lambda ctx, **_: None,
                                             params=Params, user_creatable=True,
                                             extra={"default_plan": {"kind": "period", "repeat": "weekly"}}))
    registry._REGISTRY.pop(EXPORT, None)


def row_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="job-(\d+)"', response.get_data(as_text=True))]


def headers(page) -> list[str]:
    table = page.find("table")
    return [th.find("a").text() for th in table.find_all("th")[1:-1]]  # without ticks and actions


def cells(page, job_id) -> list[str]:
    row = page.find("tr", id=f"job-{job_id}")
    return [" ".join(td.text().split()) for td in row.find_all("td")][4:-1]  # after tick, status, log and name


def import_job(name, domain, subdirectory="", **extra) -> Job:
    return make_job(name, job_type=IMPORT, domain=domain, params={"subdirectory": subdirectory,
                                                                  "file_pattern": "*.xml"}, **extra)


# --- the Import jobs page --------------------------------------------------------------------------

def test_import_jobs_page_lists_import_jobs_with_their_study_directory_plan_and_fire_times(root, study):
    site = db.session.scalar(select(Domain).where(Domain.name == "Site A1"))
    now = utcnow().replace(second=0, microsecond=0)
    north = import_job("North import", study, "north", plan={"kind": "interval", "every": 15, "unit": "minutes",
                                                              "anchor": now.isoformat()},
                       prev_fire_at=now - timedelta(minutes=15), next_fire_at=now + timedelta(minutes=15))
    plain = import_job("Site import", site)
    make_job("Self-test")

    response = root.get(f"/jobs/?type={IMPORT}")
    assert response.status_code == 200
    page = html(response)
    assert page.find("h1").text() == "Import jobs"
    assert page.find("title").text().startswith("Import jobs")
    assert sorted(row_ids(response)) == sorted([north.id, plain.id])
    assert headers(page) == ["Status", "Log", "Job", "Study or site", "Directory", "Plan", "Previous fire", "Next fire"]
    assert cells(page, north.id)[:3] == ["Study A STUDY-A", "north", "every 15 minutes"]
    assert cells(page, plain.id)[:3] == ["Site A1 STUDY-A-SITE-A1", "import directory", "disabled"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cell) for cell in cells(page, north.id)[3:])
    # The New import job button opens the form with the type chosen.
    button = next(a for a in page.find_all("a") if a.text() == "New import job")
    assert button.attrs["href"] == f"/jobs/new?type={IMPORT}"
    # The directory and the study sort like every column.
    by_directory = root.get(f"/jobs/?type={IMPORT}&sort=p.subdirectory&dir=desc")
    assert row_ids(by_directory) == [north.id, plain.id]
    by_study = root.get(f"/jobs/?type={IMPORT}&sort=domain")
    assert row_ids(by_study) == [plain.id, north.id]  # Site A1 before Study A


def test_switching_to_a_type_view_swaps_the_heading_and_button_with_the_table(root, study):
    import_job("North import", study)
    page = html(root.get("/jobs/"))
    tab = next(a for a in page.find("nav", class_="type-tabs").find_all("a") if a.text().startswith("Import data"))
    assert tab.attrs["hx-target"] == "#jobs-page" and tab.attrs["hx-select"] == "#jobs-page"
    # What htmx asks for: the whole page, of which it keeps #jobs-page (heading, button, table).
    swapped = html(root.get(tab.attrs["hx-get"], headers={"HX-Request": "true", "HX-Target": "jobs-page"}))
    part = swapped.find(id="jobs-page")
    assert part.find("h1").text() == "Import jobs"
    assert any(a.text() == "New import job" for a in part.find_all("a"))
    # A sort or find still swaps the table alone.
    table = root.get(f"/jobs/?type={IMPORT}&sort=name", headers={"HX-Request": "true", "HX-Target": "jobs-table"})
    assert table.get_data(as_text=True).lstrip().startswith('<div id="jobs-table"')


@pytest.mark.parametrize("find, expected", [
    ("north", {"north", "south"}),  # North's name, and South's directory (north-files)
    ("nightly", {"south"}),  # the description
    ("Study A", {"north", "south"}),  # the study's name
    ("SITE-A1", {"site"}),  # a site's OID
    ("2031-03-04", {"south"}),  # a fire time, as a date
    ("north%", set()),  # % is a letter
])
def test_find_on_the_import_jobs_page_matches_name_description_study_and_times(root, study, find, expected):
    site = db.session.scalar(select(Domain).where(Domain.name == "Site A1"))
    jobs = {"north": import_job("North import", study).id,
            "south": import_job("South import", study, "north-files", description="The nightly files",
                                next_fire_at=datetime(2031, 3, 4, 9, 0, tzinfo=timezone.utc)).id,
            "site": import_job("Site import", site).id}
    make_job("North self-test")  # of another type: never on this page
    response = root.get(f"/jobs/?type={IMPORT}&q={find.replace('%', '%25')}")
    assert set(row_ids(response)) == {jobs[name] for name in expected}


def test_the_find_box_says_what_it_matches_on_each_page(root, study, export_type):
    hints = {key: html(root.get(f"/jobs/?type={key}")).find(id="find-hint").text() for key in (IMPORT, EXPORT)}
    assert "study or site" in hints[IMPORT] and "date" in hints[IMPORT]
    assert "dataset" in hints[EXPORT] and "period" in hints[EXPORT]


# --- the Export jobs page --------------------------------------------------------------------------

def test_export_jobs_page_lists_dataset_format_period_and_fire_times(root, study, export_type):
    vitals = Dataset(domain_id=study.id, name="Vitals")
    labs = Dataset(domain_id=study.id, name="Labs")
    db.session.add_all([vitals, labs])
    db.session.commit()
    weekly = make_job("Vitals weekly", job_type=EXPORT, domain=study, params={"dataset": vitals.id, "format": "tsv"},
                      plan={"kind": "period", "start": "2030-01-07T06:00", "repeat": "weekly"},
                      next_fire_at=datetime(2030, 1, 7, 5, 0, tzinfo=timezone.utc))
    monthly = make_job("Labs monthly", job_type=EXPORT, domain=study, params={"dataset": labs.id, "format": "csv"},
                       plan={"kind": "period", "start": "2030-01-01T02:00", "repeat": "monthly"},
                       description="For the safety board")
    gone = make_job("Gone dataset", job_type=EXPORT, domain=study, params={"dataset": 999999, "format": "json"})
    import_job("An import", study)

    response = root.get(f"/jobs/?type={EXPORT}")
    page = html(response)
    assert page.find("h1").text() == "Export jobs"
    assert sorted(row_ids(response)) == sorted([weekly.id, monthly.id, gone.id])
    assert headers(page) == ["Status", "Log", "Job", "Dataset", "Format", "Study or site", "Period", "Previous fire",
                             "Next fire"]
    assert cells(page, weekly.id)[:5] == ["Vitals", "Tab-separated text", "Study A", "weekly from 2030-01-07 06:00",
                                          "—"]
    assert cells(page, weekly.id)[5] == "2030-01-07 06:00"  # 05:00 UTC is 06:00 in Amsterdam
    assert cells(page, gone.id)[:2] == ["deleted dataset #999999", "JSON"]
    button = next(a for a in page.find_all("a") if a.text() == "New export job")
    assert button.attrs["href"] == f"/jobs/new?type={EXPORT}"
    # Sorted by the dataset's name, not its number.
    assert row_ids(root.get(f"/jobs/?type={EXPORT}&sort=dataset"))[:2] == [monthly.id, weekly.id]
    # Find: name, description, period, dataset.
    for find, expected in (("Vitals", {weekly.id}), ("labs", {monthly.id}), ("weekly", {weekly.id}),
                           ("monthly", {monthly.id}), ("safety", {monthly.id})):
        assert set(row_ids(root.get(f"/jobs/?type={EXPORT}&q={find}"))) == expected, find


def test_export_jobs_page_answers_before_an_export_type_is_installed(root, monkeypatch):
    registry.load_builtin()
    monkeypatch.delitem(registry._REGISTRY, EXPORT, raising=False)
    response = root.get(f"/jobs/?type={EXPORT}")
    assert response.status_code == 200
    page = html(response)
    assert page.find("h1").text() == "Export jobs"
    assert "No job type for export jobs is installed" in page.find(id="type-missing").text()
    assert not any(a.text() == "New export job" for a in page.find_all("a"))
    assert "No export jobs yet." in page.find("td", class_="empty").text()


# --- the New import job form -----------------------------------------------------------------------

def test_new_import_job_starts_with_the_type_and_its_interval_plan_and_fires_when_saved(root, study, import_dir):
    import_dir("incoming")
    page = html(root.get(f"/jobs/new?type={IMPORT}"))
    assert value_of(page, "job_type") == IMPORT
    assert value_of(page, "plan-kind") == "interval"
    assert (value_of(page, "plan-every"), value_of(page, "plan-unit")) == ("15", "minutes")
    assert "The first run is when the job is saved" in page.find(id="plan-fields").text()
    assert field_block(page, "param-subdirectory").find("label").text() == "Subdirectory"
    assert "Import data jobs" not in page.text()  # the note names the study or site instead
    assert "imports into the study or site chosen here" in page.find(id="execution-note").text()

    data = {"csrf_token": csrf_from(root.get("/jobs/new")), "name": "Study A import", "description": "",
            "job_type": IMPORT, "params_for": IMPORT, "scope": "domain", "domain_id": str(study.id),
            "param-subdirectory": "incoming", "param-file_pattern": "*.xml", "plan-kind": "interval",
            "plan-shown_kind": "interval", "plan-every": "15", "plan-unit": "minutes", "report_recipients": ""}
    before = utcnow().replace(microsecond=0)
    response = root.post("/jobs/new", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    job = db.session.scalar(select(Job).where(Job.name == "Study A import"))
    # Interval: the first run when the job is saved, then every 15 minutes from then.
    assert before <= job.next_fire_at <= utcnow() + timedelta(seconds=1)
    assert datetime.fromisoformat(job.plan["anchor"]).replace(tzinfo=None) == job.next_fire_at.replace(tzinfo=None)
    assert job.params == {"subdirectory": "incoming", "file_pattern": "*.xml"}


def test_switching_a_new_job_to_import_preselects_its_plan_unless_the_plan_was_changed(root, study):
    def switch(plan):
        data = {"csrf_token": csrf_from(root.get("/jobs/new")), "job_type": IMPORT, "params_for": "system.selftest",
                "scope": "domain", **{f"plan-{k}": v for k, v in plan.items()},
                "plan-shown_kind": plan["kind"]}
        return html(root.post("/jobs/new/type-fields", data=data, headers={"HX-Request": "true"}))

    untouched = switch({"kind": "disabled"})  # the self-test starts disabled
    assert (value_of(untouched, "plan-kind"), value_of(untouched, "plan-every")) == ("interval", "15")
    assert "imports into the study or site" in untouched.find(id="execution-note").text()
    chosen = switch({"kind": "daily", "days": "1", "times": "06:00"})
    assert value_of(chosen, "plan-kind") == "daily" and value_of(chosen, "plan-times") == "06:00"


def test_new_export_job_starts_with_a_weekly_period_from_the_next_hour(root, study, export_type):
    page = html(root.get(f"/jobs/new?type={EXPORT}"))
    assert value_of(page, "job_type") == EXPORT
    assert (value_of(page, "plan-kind"), value_of(page, "plan-repeat")) == ("period", "weekly")
    start = datetime.fromisoformat(value_of(page, "plan-start"))
    now = datetime.now(sync.timezone()).replace(tzinfo=None)  # server time
    assert start.minute == 0 and timedelta(0) < start - now <= timedelta(hours=1)
    assert options_of(page, "param-format")[:2] == ["", "csv"]


@pytest.mark.parametrize("subdirectory, message", [
    ("../elsewhere", "A folder name may not contain “..”: imports read only inside the import directory."),
    ("/etc", "Give a folder inside the import directory (a relative path), not an absolute path."),
    ("leads-out", "This folder leads outside the import directory (through a symbolic link): refused."),
    ("not-there", "There is no folder “not-there” in the import directory."),
])
def test_import_form_refuses_a_subdirectory_next_to_the_field(root, study, import_dir, tmp_path, subdirectory,
                                                               message):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = Path(current_app.config["IMPORT_DIR"]) / "leads-out"
    if not link.is_symlink():
        os.symlink(outside, link)
    try:
        data = {"csrf_token": csrf_from(root.get("/jobs/new")), "name": "Bad import", "job_type": IMPORT,
                "params_for": IMPORT, "scope": "domain", "domain_id": str(study.id),
                "param-subdirectory": subdirectory, "plan-kind": "disabled", "plan-shown_kind": "disabled"}
        response = root.post("/jobs/new", data=data)
        assert response.status_code == 400
        assert error_next_to(html(response), "param-subdirectory") == message
        assert db.session.scalar(select(Job).where(Job.name == "Bad import")) is None
    finally:
        link.unlink()


def test_an_import_job_by_installation_is_refused_next_to_the_execution_field(root, study):
    data = {"csrf_token": csrf_from(root.get("/jobs/new")), "name": "Everywhere import", "job_type": IMPORT,
            "params_for": IMPORT, "scope": "installation", "domain_id": "", "plan-kind": "disabled",
            "plan-shown_kind": "disabled"}
    response = root.post("/jobs/new", data=data)
    assert response.status_code == 400
    assert error_next_to(html(response), "scope") == (
        "Import data jobs run in a domain (a study or site), not by installation: choose By domain and the domain.")


@pytest.mark.parametrize("role, sees_path", [(Role.SUPERADMIN, True), (Role.SYSADMIN, False),
                                             (Role.DOMAIN_ADMIN, False)])
def test_the_import_directory_is_shown_as_a_path_only_to_those_who_may_see_server_paths(ctx, login_as, study, role,
                                                                                          sees_path):
    user = make_user(role, domain=study if role == Role.DOMAIN_ADMIN else None,
                     supervised=[study] if role == Role.SYSADMIN else ())
    client = login_as(user)
    text = client.get(f"/jobs/new?type={IMPORT}").get_data(as_text=True)
    path = current_app.config["IMPORT_DIR"]
    assert "Default import directory" in text
    assert (path in text) is sees_path
    assert ("The import directory of this installation" in text) is not sees_path
    # A refused subdirectory never tells the path either.
    data = {"csrf_token": csrf_from(client.get("/jobs/new")), "name": "Peek", "job_type": IMPORT,
            "params_for": IMPORT, "scope": "domain", "domain_id": str(study.id), "param-subdirectory": "nope",
            "plan-kind": "disabled", "plan-shown_kind": "disabled"}
    refused = client.post("/jobs/new", data=data).get_data(as_text=True)
    assert "There is no folder “nope” in the import directory." in refused
    assert (path in refused) is sees_path


# --- the domain's OID ----------------------------------------------------------------------------

def domain_form(client, domain, **fields):
    page = client.get(f"/admin/domains/{domain.id}")
    data = {"csrf_token": csrf_from(page), "name": domain.name, "parent_id": str(domain.parent_id or ""),
            "oid": domain.oid or ""}
    data.update(fields)
    return client.post(f"/admin/domains/{domain.id}", data=data)


def test_a_domains_oid_is_shown_in_the_list_and_edited_on_its_form_audited(root, study):
    other = make_domain("Study B")
    page = html(root.get(f"/admin/domains/{other.id}"))
    assert value_of(page, "oid") == ""
    assert "StudyOID" in field_block(page, "oid").text()

    response = domain_form(root, other, oid="  STUDY-B  ")
    assert response.status_code == 302
    db.session.refresh(other)
    assert other.oid == "STUDY-B"
    tree = html(root.get("/admin/domains")).find(id=f"domain-{other.id}")
    assert "STUDY-B" in tree.find("code", class_="oid").text()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "domain",
                                                       AuditEvent.object_id == other.id))
    assert (event.action, event.actor_name, event.before, event.after) == (
        "edit", "root", {"name": "Study B", "parent": "", "oid": ""}, {"name": "Study B", "parent": "", "oid": "STUDY-B"})
    # Emptied: no OID (files name no domain then), audited too.
    assert domain_form(root, other, oid="").status_code == 302
    db.session.refresh(other)
    assert other.oid is None


@pytest.mark.parametrize("oid, message", [
    ("STUDY-A", "The OID “STUDY-A” is already that of “Study A”: each domain's OID is its own."),
    ("STUDY B", "An OID has no spaces or control characters: give it as the files' StudyOID has it, "
                "for example STUDY-A."),
    ("STUDY\u00a0B", "An OID has no spaces or control characters: give it as the files' StudyOID has it, "
                   "for example STUDY-A."),
    ("S" * 101, "An OID has at most 100 characters."),
])
def test_a_duplicate_or_malformed_oid_is_refused_next_to_the_field(root, study, oid, message):
    other = make_domain("Study B")
    events = db.session.scalar(select(db.func.count(AuditEvent.id)))
    response = domain_form(root, other, oid=oid)
    assert response.status_code == 400
    assert error_next_to(html(response), "oid") == message
    db.session.refresh(other)
    assert other.oid is None
    assert db.session.scalar(select(db.func.count(AuditEvent.id))) == events


def test_a_new_domain_can_have_its_oid_from_the_start(root, study):
    page = root.get("/admin/domains")
    response = root.post("/admin/domains", data={"csrf_token": csrf_from(page), "name": "Study C", "parent_id": "",
                                                 "oid": "STUDY-C"})
    assert response.status_code == 302
    assert db.session.scalar(select(Domain.oid).where(Domain.name == "Study C")) == "STUDY-C"
    refused = root.post("/admin/domains", data={"csrf_token": csrf_from(page), "name": "Study D", "parent_id": "",
                                                "oid": "STUDY-C"})
    assert refused.status_code == 400
    assert error_next_to(html(refused), "oid") == "The OID “STUDY-C” is already that of “Study C”: each domain's OID is its own."
    assert db.session.scalar(select(Domain).where(Domain.name == "Study D")) is None
