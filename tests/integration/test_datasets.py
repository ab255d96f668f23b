"""Dataset pages (S0 "Define Dataset") as people use them: the list, the form with the items a
domain holds, name unique per domain, edits and deletes audited, Export now queuing a run on the
export queue; each role sees and manages the datasets of its domains only, any other is a 404."""
import re
from urllib.parse import urlsplit

import pytest
from flask import g
from lxml import html as lxml_html
from sqlalchemy import func, select

from tests.factories import csrf_from, make_domain, make_user
from tests.integration.test_export import load, make_dataset
from tests.integration.test_import_data import import_dir, study  # noqa: F401  (fixture)
from webapp.execution.worker import FiretimeWorker
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import AuditEvent, Dataset, DatasetItem, Domain, Job, Role, Run, RunFile, RunStatus

SMALL = {("B-1", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.HR"): "70"}


@pytest.fixture
def studies(import_dir):
    """Study A (data as test_export's DATA) with a site, Study B with one value: their ids."""
    a = study("STUDY-A", name="Study A")
    load(import_dir, a)
    site = make_domain("Site A1", parent=db.session.get(Domain, a)).id
    b = study("STUDY-B", name="Study B")
    load(import_dir, b, SMALL, study_oid="STUDY-B", job_name="Import B")
    return {"a": a, "site": site, "b": b}


@pytest.fixture
def people(studies):
    """User names by role key: superadmin, sysadmin of Study A, administrators of A, B and Site A1."""
    a, b, site = (db.session.get(Domain, studies[k]) for k in ("a", "b", "site"))
    return {key: make_user(role, domain=domain, supervised=supervised, username=key).username for key, role, domain,
            supervised in (("superadmin", Role.SUPERADMIN, None, ()), ("sysadmin", Role.SYSADMIN, None, (a,)),
                           ("admin_a", Role.DOMAIN_ADMIN, a, ()), ("admin_b", Role.DOMAIN_ADMIN, b, ()),
                           ("admin_site", Role.DOMAIN_ADMIN, site, ()))}


class SignedIn:
    """A test client of one person. The test holds the app context, which every request shares
    (Flask pushes none of its own then), and with it `g`, where the signed-in user and the CSRF
    token are kept: each request starts with an empty `g`, as a request in a server does."""

    def __init__(self, client):
        self.client = client

    def open(self, *args, **kwargs):
        g.__dict__.clear()
        return self.client.open(*args, **kwargs)

    def get(self, *args, **kwargs):
        return self.open(*args, method="GET", **kwargs)

    def post(self, *args, **kwargs):
        return self.open(*args, method="POST", **kwargs)


@pytest.fixture
def signed_in(app, people):
    """A new client signed in as the person of that role key."""
    def sign(key):
        client = SignedIn(app.test_client())
        response = client.post("/login", data={"username": people[key], "password": "pw",
                                               "csrf_token": csrf_from(client.get("/login"))})
        assert response.status_code == 302
        return client
    return sign


def page(response):
    assert response.status_code in (200, 422), response.status_code
    return lxml_html.fromstring(response.get_data(as_text=True))


def token(client, url="/datasets/new"):
    return csrf_from(client.get(url))


def export_runs() -> int:
    return db.session.scalar(select(func.count()).select_from(Run).join(Run.job).where(
        Job.job_type.in_(["export_extract", "export_dataset"])))


def place_values(doc) -> dict[str, str]:
    """The item check boxes of the form: their text (OID path) -> value."""
    out = {}
    for box in doc.xpath('//input[@name="items"]'):
        group = box.xpath("ancestor::fieldset[1]/legend//span[@class='path']")[0].text_content()
        item = box.xpath("following-sibling::code[1]")[0].text_content()
        out[" / ".join(part.strip() for part in group.split("›")) + " / " + item] = box.get("value")
    return out


def create(client, domain_id, name="Vitals", items=("SE.BASE / F.VS / IG.VS / I.HR",), description=""):
    doc = page(client.get(f"/datasets/new?domain={domain_id}"))
    values = place_values(doc)
    data = {"csrf_token": token(client), "name": name, "domain_id": str(domain_id), "description": description,
            "items": [values[item] for item in items]}
    return client.post("/datasets/new", data=data)


# --- creating -------------------------------------------------------------------------------------

def test_the_form_offers_the_places_the_domain_holds_and_creates_an_audited_dataset(ctx, studies, signed_in):
    client = signed_in("admin_a")
    doc = page(client.get(f"/datasets/new?domain={studies['a']}"))
    assert sorted(place_values(doc)) == [
        "SE.BASE / F.VS / IG.VS / I.HR", "SE.BASE / F.VS / IG.VS / I.NOTE", "SE.BASE / F.VS / IG.VS / I.SBP",
        "SE.VISIT / F.AE / IG.AE / I.SEV", "SE.VISIT / F.AE / IG.AE / I.TERM", "SE.VISIT / F.VS / IG.VS / I.HR",
        "SE.VISIT / F.VS / IG.VS / I.NOTE"]
    # Only the domains the user may use are offered: Study A and its site.
    options = [o.text_content() for o in doc.xpath('//select[@name="domain_id"]/option')]
    assert options == ["Choose a domain…", "Study A", "Study A › Site A1"]
    response = create(client, studies["a"], "Vitals", ["SE.BASE / F.VS / IG.VS / I.HR",
                                                         "SE.VISIT / F.VS / IG.VS / I.HR"], "Heart rates")
    assert response.status_code == 302
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == "Vitals"))
    assert urlsplit(response.headers["Location"]).path == f"/datasets/{dataset.id}"
    assert (dataset.domain_id, dataset.description, len(dataset.items)) == (studies["a"], "Heart rates", 2)
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "dataset"))
    assert (audit.action, audit.actor_name, audit.object_id, audit.domain_id) == ("create", "admin_a", dataset.id,
                                                                                   studies["a"])
    assert audit.after["items"] == ["SE.BASE / F.VS / IG.VS / I.HR", "SE.VISIT / F.VS / IG.VS / I.HR"]

    detail = page(client.get(f"/datasets/{dataset.id}"))
    assert detail.get_element_by_id("item-count").text_content() == "2"
    assert detail.get_element_by_id("subjects-covered").text_content() == "3"  # S-001, S-002, S-010


def test_the_items_tree_follows_the_chosen_domain_with_and_without_javascript(ctx, studies, signed_in):
    client = signed_in("superadmin")
    fragment = client.get(f"/datasets/items?domain_id={studies['b']}", headers={"HX-Request": "true"})
    assert list(place_values(page(fragment))) == ["SE.BASE / F.VS / IG.VS / I.HR"]
    # No script: the form's own button shows the new domain's items and keeps what was typed.
    response = client.post("/datasets/new", data={"csrf_token": token(client), "name": "Kept", "refresh": "1",
                                                  "domain_id": str(studies["b"])})
    doc = page(response)
    assert list(place_values(doc)) == ["SE.BASE / F.VS / IG.VS / I.HR"]
    assert doc.xpath('//input[@name="name"]/@value') == ["Kept"]
    assert db.session.scalar(select(func.count()).select_from(Dataset)) == 0
    # A domain the user may not use shows nothing of it.
    admin_b = signed_in("admin_b")
    fragment = admin_b.get(f"/datasets/items?domain_id={studies['a']}", headers={"HX-Request": "true"})
    assert place_values(page(fragment)) == {} and "Choose a domain" in fragment.get_data(as_text=True)


def test_a_name_is_unique_in_its_domain_only(ctx, studies, signed_in):
    client = signed_in("superadmin")
    assert create(client, studies["a"], "Vitals").status_code == 302
    response = create(client, studies["a"], " vitals ")
    assert response.status_code == 422
    doc = page(response)
    assert "Study A already has a dataset named “vitals”" in doc.xpath('//*[@id="name-error"]')[0].text_content()
    assert create(client, studies["b"], "Vitals").status_code == 302
    assert db.session.scalar(select(func.count()).select_from(Dataset)) == 2


@pytest.mark.parametrize("change, field, message", [
    ({"name": ""}, "name", "A name is required."),
    ({"name": "x" * 121}, "name", "At most 120 characters."),
    ({"description": "d" * 2001}, "description", "At most 2000 characters."),
    ({"items": []}, "items", "Choose at least one item."),
    ({"items": ["1-2-3"]}, "items", "could not be read"),
    ({"items": ["01-2-3-4"]}, "items", "could not be read"),
    ({"domain_id": "abc"}, "domain_id", "Choose one of the listed domains."),
])
def test_bad_input_is_refused_next_to_its_field_and_nothing_is_written(ctx, studies, signed_in, change, field,
                                                                       message):
    client = signed_in("admin_a")
    values = place_values(page(client.get(f"/datasets/new?domain={studies['a']}")))
    data = {"csrf_token": token(client), "name": "Vitals", "domain_id": str(studies["a"]),
            "items": [values["SE.BASE / F.VS / IG.VS / I.HR"]], **change}
    response = client.post("/datasets/new", data=data)
    assert response.status_code == 422
    error = page(response).xpath(f'//*[@id="{field}-error"]')
    assert error and message in error[0].text_content()
    assert db.session.scalar(select(func.count()).select_from(Dataset)) == 0


def test_items_and_domains_of_others_cannot_be_posted(ctx, studies, signed_in):
    admin_b = signed_in("superadmin")
    b_place = list(place_values(page(admin_b.get(f"/datasets/new?domain={studies['b']}"))).values())[0]
    client = signed_in("admin_a")
    response = client.post("/datasets/new", data={"csrf_token": token(client), "name": "Mixed",
                                                  "domain_id": str(studies["a"]), "items": [b_place]})
    assert response.status_code == 422 and "are not items of Study A" in response.get_data(as_text=True)
    response = client.post("/datasets/new", data={"csrf_token": token(client), "name": "Theirs",
                                                  "domain_id": str(studies["b"]), "items": [b_place]})
    assert response.status_code == 422 and "Choose one of the listed domains." in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Dataset)) == 0


def test_every_form_needs_its_csrf_token(ctx, studies, signed_in):
    client = signed_in("superadmin")
    dataset = make_dataset(studies["a"])
    for url, data in (("/datasets/new", {"name": "X", "domain_id": str(studies["a"])}),
                      (f"/datasets/{dataset}/edit", {"name": "Y"}), (f"/datasets/{dataset}/delete", {}),
                      (f"/datasets/{dataset}/export", {"format": "csv"})):
        assert client.post(url, data=data).status_code == 400, url
    assert db.session.get(Dataset, dataset).name == "Vitals"
    assert export_runs() == 0


# --- the list, editing, deleting --------------------------------------------------------------------

def test_the_list_finds_sorts_and_shows_only_the_datasets_of_the_users_domains(ctx, studies, signed_in):
    for name, domain in (("Vitals", "a"), ("Adverse events", "a"), ("Labs", "b")):
        make_dataset(studies[domain], name, [("SE.BASE", "F.VS", "IG.VS", "I.HR")])
    client = signed_in("superadmin")
    names = page(client.get("/datasets/?sort=name")).xpath('//table//tbody//td[1]/a/text()')
    assert names == ["Adverse events", "Labs", "Vitals"]
    assert page(client.get("/datasets/?sort=name&dir=desc")).xpath('//tbody//td[1]/a/text()') == \
        ["Vitals", "Labs", "Adverse events"]
    assert page(client.get("/datasets/?q=LAB")).xpath('//tbody//td[1]/a/text()') == ["Labs"]
    assert page(client.get(f"/datasets/?domain={studies['b']}")).xpath('//tbody//td[1]/a/text()') == ["Labs"]
    fragment = client.get("/datasets/?q=vit", headers={"HX-Request": "true", "HX-Target": "datasets-table"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="datasets-table"')
    expected = {"sysadmin": ["Adverse events", "Vitals"], "admin_a": ["Adverse events", "Vitals"],
                "admin_b": ["Labs"], "admin_site": []}
    for key, shown in expected.items():
        assert page(signed_in(key).get("/datasets/?sort=name")).xpath('//tbody//td[1]/a/text()') == shown, key


@pytest.mark.parametrize("role, sees", [("superadmin", True), ("sysadmin", True), ("admin_a", True),
                                        ("admin_b", False), ("admin_site", False)])
def test_each_role_reaches_the_datasets_of_its_domains_and_gets_404_for_others(ctx, studies, signed_in, role, sees):
    dataset = make_dataset(studies["a"])
    client = signed_in(role)
    csrf = token(client, "/datasets/")
    for method, url, data in (("GET", f"/datasets/{dataset}", None), ("GET", f"/datasets/{dataset}/edit", None),
                              ("POST", f"/datasets/{dataset}/edit", {"name": "Renamed"}),
                              ("POST", f"/datasets/{dataset}/export", {"format": "csv"}),
                              ("POST", f"/datasets/{dataset}/delete", {})):
        if sees and method == "POST":
            continue  # what they do is tested below
        response = client.open(url, method=method, data={**(data or {}), "csrf_token": csrf} if data is not None else None)
        assert response.status_code == (200 if sees else 404), (role, method, url, response.status_code)
    db.session.expire_all()
    assert db.session.get(Dataset, dataset).name == "Vitals"
    assert export_runs() == 0


def test_an_edit_changes_name_and_items_and_is_audited_before_and_after(ctx, studies, signed_in):
    client = signed_in("admin_a")
    create(client, studies["a"], "Vitals", ["SE.BASE / F.VS / IG.VS / I.HR"])
    dataset = db.session.scalar(select(Dataset))
    doc = page(client.get(f"/datasets/{dataset.id}/edit"))
    values = place_values(doc)
    assert doc.xpath('//input[@name="items"][@checked]/@value') == [values["SE.BASE / F.VS / IG.VS / I.HR"]]
    response = client.post(f"/datasets/{dataset.id}/edit", data={
        "csrf_token": token(client), "name": "Vital signs", "domain_id": str(studies["a"]), "description": "",
        "items": [values["SE.BASE / F.VS / IG.VS / I.HR"], values["SE.BASE / F.VS / IG.VS / I.SBP"]]})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Dataset, dataset.id).name == "Vital signs"
    assert db.session.scalar(select(func.count()).select_from(DatasetItem)) == 2
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "edit"))
    assert (audit.before["name"], audit.after["name"]) == ("Vitals", "Vital signs")
    assert audit.after["items"] == ["SE.BASE / F.VS / IG.VS / I.HR", "SE.BASE / F.VS / IG.VS / I.SBP"]
    # Saving unchanged writes no audit record.
    client.post(f"/datasets/{dataset.id}/edit", data={
        "csrf_token": token(client), "name": "Vital signs", "domain_id": str(studies["a"]), "description": "",
        "items": [values["SE.BASE / F.VS / IG.VS / I.HR"], values["SE.BASE / F.VS / IG.VS / I.SBP"]]})
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "edit")) == 1


def test_deleting_keeps_the_exported_files_and_is_audited(ctx, studies, signed_in):
    from tests.integration.test_export import export_job, run_export

    dataset = make_dataset(studies["a"])
    run = run_export(export_job(studies["a"], dataset))
    client = signed_in("admin_a")
    detail = page(client.get(f"/datasets/{dataset}"))
    assert "1 export job exports it" in detail.text_content()
    assert detail.xpath('//a[starts-with(@href, "/runs/files/")]/text()') == [run.files[0].name]
    response = client.post(f"/datasets/{dataset}/delete", data={"csrf_token": token(client, f"/datasets/{dataset}")})
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/datasets/"
    db.session.expire_all()
    assert db.session.get(Dataset, dataset) is None
    file = db.session.scalar(select(RunFile))
    assert (file.dataset_id, file.dataset_name) == (None, "Vitals")
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "delete", AuditEvent.object_type == "dataset"))
    assert (audit.object_id, audit.actor_name, audit.before["name"]) == (dataset, "admin_a", "Vitals")
    assert client.get(f"/datasets/{dataset}").status_code == 404


# --- Export now -------------------------------------------------------------------------------------

def test_export_now_queues_a_run_on_the_export_queue_that_writes_the_file(ctx, studies, signed_in):
    dataset = make_dataset(studies["a"])
    client = signed_in("admin_a")
    response = client.post(f"/datasets/{dataset}/export",
                           data={"csrf_token": token(client, f"/datasets/{dataset}"), "format": "json"})
    assert response.status_code == 302
    run_id = int(re.fullmatch(r"/runs/(\d+)", urlsplit(response.headers["Location"]).path).group(1))
    run = db.session.get(Run, run_id)
    job = run.job
    assert (run.status, run.args, run.requested_by.username) == (RunStatus.QUEUED, f"dataset={dataset} format=json",
                                                                  "admin_a")
    assert (job.job_type, job.domain_id, job.system, registry.get(job.job_type).queue) == (
        "export_extract", studies["a"], True, "export")
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "run_now", AuditEvent.object_id == job.id))
    assert (audit.actor_name, audit.after["args"]) == ("admin_a", f"dataset={dataset} format=json")
    # The queues page lists the waiting extract in the export queue's panel.
    queues = page(client.get("/queues/"))
    panel = queues.xpath('//*[@id="queue-export"]')
    assert panel and f"#{run_id}" in panel[0].text_content()
    # The domain's people see the run's log like any other.
    assert client.get(f"/runs/{run_id}").status_code == 200
    FiretimeWorker(registry.queue_names(), connection=redis_client.conn).work(burst=True)
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert (run.files[0].dataset_id, run.files[0].file_format) == (dataset, "json")
    # A second extract is a run of the same job.
    client.post(f"/datasets/{dataset}/export", data={"csrf_token": token(client, f"/datasets/{dataset}"),
                                                      "format": "odm"})
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.job_type == "export_extract")) == 1


def test_export_now_refuses_an_unknown_format_and_a_removed_extract_job(ctx, studies, signed_in):
    from webapp.jobtypes.export_dataset import extract_job

    dataset = make_dataset(studies["a"])
    client = signed_in("admin_a")
    response = client.post(f"/datasets/{dataset}/export", data={"csrf_token": token(client, f"/datasets/{dataset}"),
                                                                 "format": "xls"}, follow_redirects=True)
    assert "Choose one of the listed formats." in response.get_data(as_text=True)
    job = extract_job(db.session.get(Domain, studies["a"]))
    job.state = "removed"
    db.session.commit()
    response = client.post(f"/datasets/{dataset}/export", data={"csrf_token": token(client, f"/datasets/{dataset}"),
                                                                 "format": "csv"}, follow_redirects=True)
    assert "Not started:" in response.get_data(as_text=True) and "restore it" in response.get_data(as_text=True)
    assert export_runs() == 0
