"""Creating, editing, removing, restoring and deleting jobs through the pages, as an
administrator meets them (SPEC sections 2, 3 and 5): every refused input shows its message
next to its field, with status 400, the input kept and nothing saved.

Requests are made with no application context held by the test (each request gets its own,
as in real use); the test's own database reads happen in short `with app.app_context()`
blocks. CSRF protection is on: every POST carries the token of the page, as a browser would.
The server time zone is Europe/Amsterdam (tests/conftest.py).
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.extensions import db, redis_client
from webapp.jobs import editing
from webapp.jobtypes import registry
from webapp.mail_addresses import parse_recipients, valid_recipients
from webapp.models import AuditEvent, Job, Role, Run, RunFile, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.scheduling import sync

TZ = ZoneInfo("Europe/Amsterdam")
UTC = ZoneInfo("UTC")


# --- reading pages -----------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)
    parent: "Node | None" = None

    def text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else c.text() for c in self.children).split())

    def iter(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag=None, **attrs):
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag=None, **attrs):
        found = self.find_all(tag, **attrs)
        return found[0] if found else None


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = self.current = Node("root", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, parent=self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, parent=self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def html(response) -> Node:
    builder = _TreeBuilder()
    builder.feed(response.get_data(as_text=True))
    return builder.root


def field_block(page: Node, name: str) -> Node:
    """The form row of an input: its label, input, hint and error messages."""
    block = page.find(data_field=name)
    assert block is not None, f"no form row for {name!r}"
    return block


def error_next_to(page: Node, name: str) -> str:
    """The error message(s) shown in the row of the input `name`; the input is marked invalid."""
    block = field_block(page, name)
    messages = [p.text() for p in block.find_all("p") if "field-error" in p.attrs.get("class", "")]
    assert messages, f"no message next to {name!r}: {block.text()!r}"
    inputs = [n for n in block.iter() if n.attrs.get("name") == name]
    if block.tag == "fieldset":  # a group of check boxes: the group points at the message
        assert f"{block.attrs['data-field']}-error" in block.attrs.get("aria-describedby", "")
    elif inputs:
        assert inputs[0].attrs.get("aria-invalid") == "true", f"{name} is not marked invalid"
        assert f"{inputs[0].attrs['id']}-error" in inputs[0].attrs.get("aria-describedby", "")
    return " ".join(messages)


def value_of(page: Node, name: str):
    node = next((n for n in page.iter() if n.attrs.get("name") == name and n.tag in ("input", "select", "textarea")),
                None)
    assert node is not None, f"no input named {name!r}"
    if node.tag == "select":
        chosen = [o.attrs.get("value") for o in node.find_all("option") if "selected" in o.attrs]
        return chosen[0] if chosen else None
    if node.tag == "textarea":
        return node.text()
    if node.attrs.get("type") == "checkbox":
        return "checked" in node.attrs
    return node.attrs.get("value", "")


def options_of(page: Node, name: str) -> list[str]:
    select_ = next(n for n in page.iter() if n.tag == "select" and n.attrs.get("name") == name)
    return [o.attrs.get("value") for o in select_.find_all("option")]


def flashes(page: Node) -> str:
    return " ".join(n.text() for n in page.iter() if "flash" in n.attrs.get("class", "").split())


def fire_times(node: Node) -> list[datetime]:
    return [datetime.fromisoformat(t.attrs["datetime"]) for t in node.find_all("time") if t.parent.tag == "li"]


def next_fires(admin, job_id) -> list[datetime]:
    """The next fire times the job page's scheduling tab lists (the saved plan's, not the form's)."""
    listed = html(admin.get(f"/jobs/{job_id}?tab=scheduling")).find(id="next-fires")
    return fire_times(listed) if listed is not None else []


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    """Hashing is not what these tests are about (test_auth checks it)."""
    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


@pytest.fixture
def domains(app):
    with app.app_context():
        study_a = make_domain("Study A")
        site_a1 = make_domain("Site A1", parent=study_a)
        study_b = make_domain("Study B")
        return SimpleNamespace(study_a=study_a.id, site_a1=site_a1.id, study_b=study_b.id)


@pytest.fixture
def sign_in(app, login_as, domains):
    """Sign in as a new user: sign_in() a superadmin, sign_in(Role.DOMAIN_ADMIN, "study_a") ..."""

    def signed(role=Role.SUPERADMIN, domain=None):
        with app.app_context():
            from webapp.models import Domain

            home = db.session.get(Domain, getattr(domains, domain)) if domain else None
            username = make_user(role, domain=home).username
        client = login_as(SimpleNamespace(username=username))
        client.username = username
        return client

    return signed


@pytest.fixture
def admin(sign_in):
    return sign_in()


def new_job_form(client, **overrides) -> dict:
    """What the New job page posts for a valid self-test job run by installation, with the
    page's own CSRF token; keyword arguments replace fields (None leaves one out)."""
    page = client.get("/jobs/new")
    assert page.status_code == 200
    data = {
        "csrf_token": csrf_from(page),
        "name": "Nightly self-test",
        "description": "Checks the workers every night.",
        "job_type": "system.selftest",
        "scope": "installation",
        "domain_id": "",
        "params_for": "system.selftest",
        "param-duration": "2",
        "param-lines_per_second": "1",
        "plan-kind": "disabled",
        "report_recipients": "",
    }
    data.update({k.replace("__", "-"): v for k, v in overrides.items()})
    data["plan-shown_kind"] = data["plan-kind"]
    return {k: v for k, v in data.items() if v is not None}


def edit_job_form(client, job_id, **overrides) -> dict:
    """new_job_form's values, posted from the job's edit page as just opened (with its version)."""
    version = html(client.get(f"/jobs/{job_id}/edit")).find("input", name="version")
    assert version is not None, "the edit form carries no version"
    return {**new_job_form(client, **overrides), "version": version.attrs["value"]}


def scheduled_entries(app) -> dict:
    with app.app_context():
        conn = redis_client.conn
        return {member.decode(): score for member, score in
                conn.zrange(sync.scheduler().scheduled_jobs_key, 0, -1, withscores=True)}


def job_named(app, name) -> Job | None:
    with app.app_context():
        job = db.session.scalar(Job.live().where(Job.name == name))
        if job is not None:
            db.session.expunge(job)
        return job


def get_job(app, job_id) -> Job:
    with app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge(job)
        return job


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count(Job.id))), db.session.scalar(select(func.count(AuditEvent.id))))


def audits(app, job_id, action=None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.object_type == "job", AuditEvent.object_id == job_id)
        if action:
            query = query.where(AuditEvent.action == action)
        events = db.session.scalars(query.order_by(AuditEvent.id)).all()
        for event in events:
            db.session.expunge(event)
        return events


def saved(response) -> int:
    """The id of the job a successful save redirected to."""
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    path = urlsplit(response.headers["Location"]).path
    assert path.startswith("/jobs/") and path.split("/")[2].isdigit(), path
    return int(path.split("/")[2])


# --- the new-job page ------------------------------------------------------------------------------

def test_jobs_list_links_to_the_new_job_form(admin):
    page = html(admin.get("/jobs/"))
    link = next(a for a in page.find_all("a") if a.text() == "New job")
    assert link.attrs["href"] == "/jobs/new"

    form = html(admin.get("/jobs/new?type=system.selftest"))
    assert form.find("h1").text() == "New job"
    assert options_of(form, "job_type") == [jt.key for jt in registry.all_types() if jt.user_creatable]
    # Only the user-creatable types; none of them declares an automatic plan, so no "automatic".
    assert "system.purge_history" not in options_of(form, "job_type")
    assert options_of(form, "plan-kind") == ["interval", "period", "daily", "cron", "poll", "disabled"]
    # The self-test's parameters come from its schema: numbers, check boxes, labels from metadata.
    duration = field_block(form, "param-duration")
    assert duration.find("label").text() == "Duration (seconds)"
    assert duration.find("input").attrs["type"] == "number"
    assert duration.find("input").attrs["value"] == "10"  # the schema's default
    fail = field_block(form, "param-fail_at_end")
    assert fail.find("input").attrs["type"] == "checkbox" and "checked" not in fail.find("input").attrs
    assert fail.find("label").text() == "Fail at the end"
    # A superadmin may choose either kind of execution.
    scope = field_block(form, "scope")
    assert {i.attrs["value"] for i in scope.find_all("input", type="radio")} == {"domain", "installation"}


def test_creating_an_interval_job_fires_when_saved_then_every_interval(app, admin):
    before = utcnow().replace(microsecond=0)
    response = admin.post("/jobs/new", data=new_job_form(admin, plan__kind="interval", plan__every="12",
                                                         plan__unit="hours"))
    job_id = saved(response)
    after = utcnow()
    job = get_job(app, job_id)

    anchor = datetime.fromisoformat(job.plan["anchor"])
    assert job.plan == {"kind": "interval", "every": 12, "unit": "hours", "anchor": anchor.isoformat()}
    assert before <= anchor <= after
    assert job.next_fire_at == anchor  # the first run is when the job is saved (SPEC 3)
    assert scheduled_entries(app) == {sync.occurrence_id(job_id): anchor.timestamp()}
    assert job.params == {"duration": 2.0, "lines_per_second": 1.0, "fail_at_end": False, "output_csv": False}
    assert (job.scope, job.domain_id, job.state, job.system) == ("installation", None, "active", False)

    page = html(admin.get(response.headers["Location"]))
    assert "Job “Nightly self-test” is saved." in flashes(page)
    assert page.find("h1").text() == "Nightly self-test"
    shown = next_fires(admin, job_id)
    assert shown == [anchor + timedelta(hours=12 * k) for k in range(5)]
    assert "every 12 hours" in html(admin.get(f"/jobs/{job_id}?tab=scheduling")).text()

    [event] = audits(app, job_id)
    assert event.action == "create" and event.actor_name == admin.username and event.before is None
    assert event.after["name"] == "Nightly self-test"
    assert event.after["plan"] == job.plan and event.after["params"] == job.params
    assert event.after["next_fire_at"] == anchor.isoformat()


def _next_local(after_utc, wanted) -> datetime:
    """The first local minute after `after_utc` for which wanted(local datetime) is true."""
    local = after_utc.astimezone(TZ).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not wanted(local):
        local += timedelta(minutes=1)
    return local.astimezone(UTC)


@pytest.mark.parametrize("kind, fields, stored, first", [
    ("period", {"plan__start": "2031-03-10T08:15", "plan__repeat": "weekly"},
     {"kind": "period", "start": "2031-03-10T08:15", "repeat": "weekly"},
     lambda now: datetime(2031, 3, 10, 8, 15, tzinfo=TZ).astimezone(UTC)),
    ("daily", {"plan__days": ["0", "2", "4"], "plan__times": "17:30, 06:05"},
     {"kind": "daily", "days": [0, 2, 4], "times": ["06:05", "17:30"]},
     lambda now: _next_local(now, lambda t: t.weekday() in (0, 2, 4) and (t.hour, t.minute) in ((6, 5), (17, 30)))),
    ("cron", {"plan__expression": "15 3 * * *"},
     {"kind": "cron", "expression": "15 3 * * *"},
     lambda now: _next_local(now, lambda t: (t.hour, t.minute) == (3, 15))),
])
def test_creating_wall_clock_plans_stores_them_and_their_next_fire_time(app, admin, kind, fields, stored, first):
    now = utcnow()
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind=kind, **fields)))
    job = get_job(app, job_id)
    assert job.plan == stored
    assert job.next_fire_at == first(now)
    local = job.next_fire_at.astimezone(TZ)
    assert local.second == 0  # server wall time: 08:15 Amsterdam, not 08:15 UTC
    assert scheduled_entries(app) == {sync.occurrence_id(job_id): job.next_fire_at.timestamp()}


@pytest.mark.parametrize("seconds, stored_seconds", [("30", 30), ("", 60)])
def test_creating_a_poll_job_fires_now_then_every_n_seconds(app, admin, seconds, stored_seconds):
    before = utcnow().replace(microsecond=0)
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="poll", plan__seconds=seconds)))
    job = get_job(app, job_id)
    anchor = datetime.fromisoformat(job.plan["anchor"])
    assert job.plan == {"kind": "poll", "seconds": stored_seconds, "anchor": anchor.isoformat()}
    assert before <= anchor <= utcnow() and job.next_fire_at == anchor
    assert scheduled_entries(app) == {sync.occurrence_id(job_id): anchor.timestamp()}


def test_creating_a_disabled_job_schedules_nothing(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="disabled")))
    job = get_job(app, job_id)
    assert job.plan == {"kind": "disabled"} and job.next_fire_at is None
    assert scheduled_entries(app) == {}
    page = html(admin.get(f"/jobs/{job_id}?tab=scheduling"))
    assert next_fires(admin, job_id) == []
    assert "None: the job runs only when started by hand or through the API." in page.text()


@pytest.fixture
def automatic_type(monkeypatch):
    """A user-creatable job type that declares an automatic plan, for this test only."""
    job_type = registry.JobType(key="tests.hourly_report", label="Hourly report", run=lambda ctx: None,
                                user_creatable=True, automatic_plan={"kind": "cron", "expression": "5 * * * *"})
    registry.load_builtin()
    monkeypatch.setitem(registry._REGISTRY, job_type.key, job_type)
    return job_type


def test_automatic_is_offered_only_for_types_that_declare_a_plan(app, admin, automatic_type):
    # Choosing the type swaps in its parameters and a schedule list with "automatic".
    form = new_job_form(admin, job_type=automatic_type.key)
    fragment = admin.post("/jobs/new/type-fields", data=form, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = html(fragment)
    assert "<html" not in fragment.get_data(as_text=True)
    assert body.find(id="params-card") is not None and body.find(id="plan-card") is not None
    assert "automatic" in options_of(body, "plan-kind")
    assert "Hourly report has no parameters." in body.text()
    self_test = admin.post("/jobs/new/type-fields", data=new_job_form(admin), headers={"HX-Request": "true"})
    assert "automatic" not in options_of(html(self_test), "plan-kind")  # the self-test declares none

    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, job_type=automatic_type.key,
                                                             params_for=automatic_type.key, plan__kind="automatic")))
    job = get_job(app, job_id)
    assert job.plan == {"kind": "automatic"}
    local = job.next_fire_at.astimezone(TZ)
    assert local.minute == 5 and job.next_fire_at - utcnow() <= timedelta(hours=1)

    # The self-test declares no automatic plan: a forged "automatic" is refused next to the field.
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=new_job_form(admin, name="Forged", plan__kind="automatic"))
    assert response.status_code == 400
    assert "declares no automatic schedule" in error_next_to(html(response), "plan-kind")
    assert counts(app) == (jobs, events)


# --- refused input -------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, name, message", [
    ({"plan__kind": "interval", "plan__every": "0", "plan__unit": "hours"}, "plan-every", "Must be at least 1."),
    ({"plan__kind": "interval", "plan__every": "", "plan__unit": "hours"}, "plan-every", "A value is required."),
    ({"plan__kind": "poll", "plan__seconds": "301"}, "plan-seconds", "Must be between 1 and 300 seconds."),
    ({"plan__kind": "cron", "plan__expression": "61 * * * *"}, "plan-expression",
     "The minute field takes 0–59; 61 is out of range."),
    ({"plan__kind": "cron", "plan__expression": "every day at noon"}, "plan-expression",
     "A cron expression has five fields: minute hour day-of-month month day-of-week, e.g. 30 2 * * 1-5; "
     "this one has 4 fields."),
    ({"plan__kind": "cron", "plan__expression": "@reboot"}, "plan-expression",
     "'@reboot' is not a shortcut this schedule knows; use @hourly, @daily, @weekly, @monthly or @yearly"),
    ({"plan__kind": "period", "plan__start": "", "plan__repeat": "daily"}, "plan-start",
     "A start date and time is required."),
    ({"plan__kind": "daily", "plan__times": "25:00"}, "plan-times", "'25:00' is not a valid time"),
    ({"plan__kind": "daily", "plan__times": "08:00", "plan__days": None}, "plan-days", "Choose at least one day."),
    ({"plan__kind": "hourly"}, "plan-kind", "Choose one of the listed schedule kinds."),
])
def test_an_invalid_plan_is_refused_next_to_its_field(app, admin, fields, name, message):
    form = new_job_form(admin, **fields)
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 400
    page = html(response)
    assert message in error_next_to(page, name)
    assert "The job is not saved" in flashes(page)
    # The user's input is kept.
    assert value_of(page, "name") == "Nightly self-test"
    assert value_of(page, "param-duration") == "2"
    if name not in ("plan-kind", "plan-days"):
        assert value_of(page, name) == form[name]
    assert counts(app) == (jobs, events)
    assert scheduled_entries(app) == {}


def test_every_problem_is_shown_at_once_and_nothing_is_saved(app, admin):
    form = new_job_form(admin, name="  ", job_type="system.selftest", param__duration="-1",
                        param__lines_per_second="fast", plan__kind="interval", plan__every="0", plan__unit="weeks",
                        report_enabled="y", report_recipients="dm@example.org, not-an-address")
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 400
    page = html(response)
    assert error_next_to(page, "name") == "A name is required."
    assert "greater than or equal to 0" in error_next_to(page, "param-duration")
    assert error_next_to(page, "param-lines_per_second") == "Not a valid number."
    assert error_next_to(page, "plan-every") == "Must be at least 1."
    assert error_next_to(page, "plan-unit") == 'Must be "minutes" or "hours".'
    assert "“not-an-address” is not a valid email address" in error_next_to(page, "report_recipients")
    assert value_of(page, "param-lines_per_second") == "fast"
    assert value_of(page, "report_recipients") == "dm@example.org, not-an-address"
    assert value_of(page, "report_enabled") is True
    assert counts(app) == (jobs, events)


def test_duplicate_names_are_refused_and_a_deleted_jobs_name_is_free(app, admin):
    with app.app_context():
        taken = make_job("Nightly export").id
        make_job("Old import", deleted_at=utcnow())
    jobs, events = counts(app)
    for name in ("Nightly export", "nightly EXPORT", "  Nightly   export "):
        response = admin.post("/jobs/new", data=new_job_form(admin, name=name))
        assert response.status_code == 400, name
        assert "A job named “" in error_next_to(html(response), "name")
        assert "already exists" in error_next_to(html(response), "name")
    assert counts(app) == (jobs, events)

    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, name="Old import")))
    assert get_job(app, job_id).name == "Old import"

    # Renaming another job to a taken name is refused the same way.
    response = admin.post(f"/jobs/{job_id}/edit", data=edit_job_form(admin, job_id, name="Nightly export"))
    assert response.status_code == 400
    assert "already exists" in error_next_to(html(response), "name")
    assert get_job(app, job_id).name == "Old import" and get_job(app, taken).name == "Nightly export"


@pytest.mark.parametrize("name", ["Nightly \u202eevil\u202c export", "Nightly\u200bexport", "Nightly \u2066export"])
def test_a_name_with_invisible_formatting_characters_is_refused(app, admin, name):
    """A right-to-left override shows "evil" as "live" in every list; a zero-width space makes two
    names that read alike."""
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=new_job_form(admin, name=name))
    assert response.status_code == 400
    assert "invisible formatting characters" in error_next_to(html(response), "name")
    assert counts(app) == (jobs, events)


@pytest.mark.parametrize("recipients, bad", [
    ("dm@example.org, pi@", "pi@"),
    ("dm@example.org; not an address", "not an address"),
    ("dm@@example.org", "dm@@example.org"),
])
def test_bad_recipient_addresses_are_named_next_to_the_field(app, admin, recipients, bad):
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=new_job_form(admin, report_enabled="y", report_recipients=recipients))
    assert response.status_code == 400
    assert f"“{bad}” is not a valid email address" in error_next_to(html(response), "report_recipients")
    assert counts(app) == (jobs, events)


def test_report_on_needs_an_address_and_good_addresses_are_stored(app, admin):
    response = admin.post("/jobs/new", data=new_job_form(admin, report_enabled="y", report_recipients=" "))
    assert response.status_code == 400
    assert error_next_to(html(response), "report_recipients") == "Give at least one address to send the report to."

    job_id = saved(admin.post("/jobs/new", data=new_job_form(
        admin, report_enabled="y", report_recipients="dm@example.org,  pi@Example.ORG\nDM@example.org")))
    job = get_job(app, job_id)
    assert job.report_enabled is True
    assert job.report_recipients == "dm@example.org, pi@example.org"
    assert "On: sent to dm@example.org, pi@example.org" in html(admin.get(f"/jobs/{job_id}")).text()


def test_parameters_are_validated_by_the_job_types_schema(app, admin):
    response = admin.post("/jobs/new", data=new_job_form(admin, param__duration="90000"))
    assert response.status_code == 400
    assert "less than or equal to 86400" in error_next_to(html(response), "param-duration")

    # Blank numbers take the schema's default; an unticked box is False.
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, param__duration="", param__output_csv="y")))
    assert get_job(app, job_id).params == {"duration": 10.0, "lines_per_second": 1.0, "fail_at_end": False,
                                           "output_csv": True}


@pytest.fixture
def typed_params(monkeypatch):
    """A user-creatable job type with a required text and an integer parameter."""

    class Params(Schema):
        folder = fields.String(required=True, metadata={"label": "Import folder"})
        batch = fields.Integer(load_default=100, validate=validate.Range(1, 1000), metadata={"label": "Batch size"})

    job_type = registry.JobType(key="tests.folder_import", label="Folder import", run=lambda ctx, **kw: None,
                                params=Params, user_creatable=True)
    registry.load_builtin()
    monkeypatch.setitem(registry._REGISTRY, job_type.key, job_type)
    return job_type


def test_text_and_integer_parameters(app, admin, typed_params):
    form = new_job_form(admin, job_type=typed_params.key, params_for=typed_params.key,
                        **{"param-duration": None, "param-lines_per_second": None, "param-batch": "2.5"})
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 400
    page = html(response)
    assert error_next_to(page, "param-folder") == "A value is required."
    assert error_next_to(page, "param-batch") == "Not a valid integer."
    assert field_block(page, "param-folder").find("label").text() == "Import folder"
    assert field_block(page, "param-folder").find("input").attrs["type"] == "text"
    assert field_block(page, "param-batch").find("input").attrs["type"] == "number"

    job_id = saved(admin.post("/jobs/new", data={**form, "param-folder": "incoming/site-a", "param-batch": "50"}))
    assert get_job(app, job_id).params == {"folder": "incoming/site-a", "batch": 50}


def test_switching_job_type_shows_the_new_types_defaults(admin, typed_params):
    # The posted parameters belong to the self-test; the folder import starts from its defaults.
    form = new_job_form(admin, job_type=typed_params.key)
    body = html(admin.post("/jobs/new/type-fields", data=form, headers={"HX-Request": "true"}))
    assert value_of(body, "param-batch") == "100"
    assert value_of(body, "params_for") == typed_params.key
    assert body.find(data_field="param-duration") is None


def test_a_forged_job_type_is_refused(app, admin):
    jobs, events = counts(app)
    for key in ("system.purge_history", "webapp.jobtypes.system.selftest", "nope"):
        response = admin.post("/jobs/new", data=new_job_form(admin, job_type=key))
        assert response.status_code == 400
        assert error_next_to(html(response), "job_type") == "Choose one of the listed job types."
    assert counts(app) == (jobs, events)


# --- who may create where ------------------------------------------------------------------------

def test_a_domain_admin_creates_jobs_only_in_its_own_domain_subtree(app, sign_in, domains):
    client = sign_in(Role.DOMAIN_ADMIN, "study_a")
    page = html(client.get("/jobs/new"))
    assert options_of(page, "domain_id") == ["", str(domains.study_a), str(domains.site_a1)]
    assert "Study A › Site A1" in page.text()
    assert not page.find("input", type="radio", value="installation")  # by domain only

    jobs, events = counts(app)
    # Another domain's id, an id that does not exist, and installation scope: each refused, nothing saved.
    for overrides, name in ((dict(scope="domain", domain_id=str(domains.study_b)), "domain_id"),
                            (dict(scope="domain", domain_id="987654"), "domain_id"),
                            (dict(scope="domain", domain_id=""), "domain_id"),
                            (dict(scope="installation"), "scope")):
        response = client.post("/jobs/new", data=new_job_form(client, **overrides))
        assert response.status_code == 400, overrides
        page = html(response)
        assert error_next_to(page, name), overrides
        assert "Study B" not in page.text()  # the forged domain's name is not revealed
    assert counts(app) == (jobs, events)

    job_id = saved(client.post("/jobs/new", data=new_job_form(client, scope="domain",
                                                              domain_id=str(domains.site_a1))))
    job = get_job(app, job_id)
    assert (job.scope, job.domain_id) == ("domain", domains.site_a1)
    assert client.get(f"/jobs/{job_id}").status_code == 200

    # Moving it to another domain through the edit form is refused too.
    response = client.post(f"/jobs/{job_id}/edit", data=edit_job_form(client, job_id, scope="domain",
                                                                       domain_id=str(domains.study_b)))
    assert response.status_code == 400
    assert get_job(app, job_id).domain_id == domains.site_a1


def test_a_domain_admin_cannot_open_another_domains_job_forms(app, sign_in, domains):
    with app.app_context():
        from webapp.models import Domain

        other = make_job("Study B job", domain=db.session.get(Domain, domains.study_b)).id
    client = sign_in(Role.DOMAIN_ADMIN, "study_a")
    token = csrf_from(client.get("/jobs/new"))
    assert client.get(f"/jobs/{other}/edit").status_code == 404
    for action in ("edit", "remove", "restore", "delete", "plan-preview", "edit/plan-fields", "edit/type-fields"):
        assert client.post(f"/jobs/{other}/{action}", data={"csrf_token": token}).status_code == 404, action
    job = get_job(app, other)
    assert (job.state, job.deleted_at) == ("active", None)
    assert audits(app, other) == []


# --- the preview of the next five fire times ---------------------------------------------------

def preview(client, **fields):
    token = csrf_from(client.get("/jobs/new"))
    data = {"plan-" + k: v for k, v in fields.items()}
    data["plan-shown_kind"] = fields.get("kind")
    return client.post("/jobs/plan-preview", data={**data, "job_type": "system.selftest"},
                       headers={"HX-Request": "true", "X-CSRFToken": token})


def test_the_preview_lists_the_next_five_fire_times_in_server_time(admin):
    response = preview(admin, kind="cron", expression="0 9 * * 1")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" not in body and 'id="plan-preview"' in body
    fragment = html(response)
    times = fire_times(fragment)
    assert len(times) == 5
    # Mondays 09:00 Amsterdam time, also across a change of daylight-saving time.
    local = [t.astimezone(TZ) for t in times]
    assert all((t.weekday(), t.hour, t.minute) == (0, 9, 0) for t in local)
    assert [(t.date() - local[0].date()).days for t in local] == [0, 7, 14, 21, 28]
    assert times[0] == _next_local(utcnow() - timedelta(seconds=5), lambda t: t.weekday() == 0 and
                                   (t.hour, t.minute) == (9, 0))
    assert [li.text() for li in fragment.find_all("li")] == \
        [t.astimezone(TZ).strftime("%a %Y-%m-%d %H:%M:%S") for t in times]
    assert "Europe/Amsterdam" in fragment.text()

    # An interval's first fire time is now: the moment the job would be saved.
    before = utcnow().replace(microsecond=0)
    times = fire_times(html(preview(admin, kind="interval", every="2", unit="hours")))
    assert before <= times[0] <= utcnow() + timedelta(seconds=1)
    assert times == [times[0] + timedelta(hours=2 * k) for k in range(5)]


def test_the_preview_shows_what_is_wrong_with_the_plan(admin):
    response = preview(admin, kind="poll", seconds="301")
    assert response.status_code == 200  # HTMX swaps it in, like a list of times
    fragment = html(response)
    assert fire_times(fragment) == []
    assert "Every (seconds): Must be between 1 and 300 seconds." in fragment.text()
    assert "Runs only" not in fragment.text()
    assert "only when started by hand" in html(preview(admin, kind="disabled")).text()


def test_the_preview_is_csrf_protected(admin):
    response = admin.post("/jobs/plan-preview", data={"plan-kind": "cron", "plan-expression": "0 9 * * *"},
                          headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert 'id="plan-preview"' not in response.get_data(as_text=True)


def test_switching_the_schedule_kind_swaps_in_that_kinds_fields(admin):
    page = html(admin.get("/jobs/new?type=system.selftest"))
    assert page.find(data_field="plan-every") is None  # a new job starts disabled: no plan fields
    kind_select = next(n for n in page.iter() if n.tag == "select" and n.attrs.get("name") == "plan-kind")
    assert kind_select.attrs["hx-post"] == "/jobs/new/plan-fields"
    assert kind_select.attrs["hx-target"] == "#plan-fields"
    # Typing in any plan field asks for the preview; the listener sits outside the swapped fields.
    previewer = next(n for n in page.iter() if n.attrs.get("hx-post") == "/jobs/plan-preview")
    assert previewer.attrs["hx-trigger"].startswith("input") and previewer.attrs["hx-target"] == "#plan-preview"

    form = new_job_form(admin, plan__kind="daily")
    form["plan-shown_kind"] = "disabled"  # the browser still shows the disabled plan's (no) fields
    response = admin.post("/jobs/new/plan-fields", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 200
    fragment = html(response)
    root = next(fragment.iter())
    assert root.attrs["id"] == "plan-fields"
    assert field_block(fragment, "plan-times") and field_block(fragment, "plan-days")
    assert fragment.find(data_field="plan-every") is None
    # A new daily plan starts with every day ticked.
    assert {i.attrs["value"] for i in fragment.find_all("input", type="checkbox") if "checked" in i.attrs} == \
        {str(d) for d in range(7)}


def test_without_javascript_a_refresh_shows_the_fields_and_saves_nothing(app, admin):
    jobs, events = counts(app)
    form = new_job_form(admin, plan__kind="interval", refresh="plan")
    form["plan-shown_kind"] = "disabled"
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 200
    page = html(response)
    assert field_block(page, "plan-every") and field_block(page, "plan-unit")
    assert not [p for p in page.iter() if "field-error" in p.attrs.get("class", "")]
    assert value_of(page, "name") == "Nightly self-test"
    assert counts(app) == (jobs, events)


# --- editing -----------------------------------------------------------------------------------------

def test_editing_a_job_shows_its_settings_and_audits_what_changed(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="cron", plan__expression="0 4 * * *")))
    page = html(admin.get(f"/jobs/{job_id}/edit"))
    assert value_of(page, "name") == "Nightly self-test"
    assert value_of(page, "plan-kind") == "cron" and value_of(page, "plan-expression") == "0 4 * * *"
    assert value_of(page, "param-duration") == "2"
    assert len(fire_times(page.find(id="plan-preview"))) == 5

    fields = dict(description="Checks the workers twice a day.", plan__kind="daily",
                  plan__days=[str(d) for d in range(7)], plan__times="06:00, 18:00")
    form = edit_job_form(admin, job_id, **fields)
    before_fire = get_job(app, job_id).next_fire_at
    now = utcnow()
    response = admin.post(f"/jobs/{job_id}/edit", data=form)
    assert saved(response) == job_id
    job = get_job(app, job_id)
    assert job.plan == {"kind": "daily", "days": list(range(7)), "times": ["06:00", "18:00"]}
    assert job.next_fire_at == _next_local(now - timedelta(seconds=1), lambda t: (t.hour, t.minute) in
                                           ((6, 0), (18, 0)))
    assert scheduled_entries(app) == {sync.occurrence_id(job_id): job.next_fire_at.timestamp()}

    [event] = audits(app, job_id, "edit")
    assert event.actor_name == admin.username
    assert set(event.before) == {"description", "plan", "next_fire_at"}
    assert event.before["plan"] == {"kind": "cron", "expression": "0 4 * * *"}
    assert event.after["plan"] == job.plan and event.after["description"] == "Checks the workers twice a day."
    assert event.before["next_fire_at"] == before_fire.isoformat()
    assert "Job “Nightly self-test” is saved." in flashes(html(admin.get(f"/jobs/{job_id}")))

    # Saving again without a change writes nothing.
    assert saved(admin.post(f"/jobs/{job_id}/edit", data=edit_job_form(admin, job_id, **fields))) == job_id
    assert len(audits(app, job_id, "edit")) == 1
    assert "Nothing was changed." in flashes(html(admin.get(f"/jobs/{job_id}")))


def test_editing_keeps_an_intervals_rhythm_unless_the_interval_changes(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="interval", plan__every="6",
                                                             plan__unit="hours")))
    anchor = get_job(app, job_id).plan["anchor"]
    saved(admin.post(f"/jobs/{job_id}/edit", data=edit_job_form(admin, job_id, description="Renamed only",
                                                                  plan__kind="interval", plan__every="6",
                                                                  plan__unit="hours")))
    job = get_job(app, job_id)
    assert job.plan["anchor"] == anchor and job.description == "Renamed only"
    [event] = audits(app, job_id, "edit")
    assert set(event.after) == {"description"}

    # A new interval starts when it is saved: saved an hour after the anchor, it counts from then.
    later = datetime.fromisoformat(anchor) + timedelta(hours=1)
    with app.app_context():
        from webapp.models import User

        user = db.session.scalar(select(User).where(User.username == admin.username))
        job = db.session.get(Job, job_id)
        data = editing.JobInput(name=job.name, description=job.description, job_type=job.job_type,
                                scope=job.scope, params=job.params,
                                plan={"kind": "interval", "every": "3", "unit": "hours"})
        assert set(editing.update_job(user, job, data, now=later)) == {"plan"}
    job = get_job(app, job_id)
    assert job.plan == {"kind": "interval", "every": 3, "unit": "hours", "anchor": later.isoformat()}
    assert job.next_fire_at == later
    assert scheduled_entries(app) == {sync.occurrence_id(job_id): later.timestamp()}


@pytest.fixture
def system_job(app):
    with app.app_context():
        sync.ensure_system_jobs()
        job = db.session.scalar(Job.live().where(Job.job_type == "system.purge_history"))
        return SimpleNamespace(id=job.id, name=job.name, description=job.description)


def test_a_system_jobs_name_description_and_type_cannot_be_edited(app, admin, system_job):
    page = html(admin.get(f"/jobs/{system_job.id}/edit"))
    assert not any(n.attrs.get("name") in ("name", "description", "job_type", "scope", "domain_id")
                   for n in page.iter() if n.tag in ("input", "select", "textarea"))
    assert system_job.name in page.text() and system_job.description in page.text()
    assert "automatic" in options_of(page, "plan-kind") and value_of(page, "plan-kind") == "automatic"

    form = edit_job_form(admin, system_job.id, name="Hacked", description="Hacked", job_type="system.selftest",
                         scope="domain", params_for="system.purge_history", plan__kind="daily",
                         plan__days=["6"], plan__times="03:00", report_enabled="y",
                         report_recipients="ops@example.org")
    assert saved(admin.post(f"/jobs/{system_job.id}/edit", data=form)) == system_job.id
    job = get_job(app, system_job.id)
    assert (job.name, job.description, job.job_type, job.scope, job.system) == \
        (system_job.name, system_job.description, "system.purge_history", "installation", True)
    assert job.plan == {"kind": "daily", "days": [6], "times": ["03:00"]}
    assert (job.report_enabled, job.report_recipients) == (True, "ops@example.org")
    local = job.next_fire_at.astimezone(TZ)
    assert (local.weekday(), local.hour, local.minute) == (6, 3, 0)
    assert scheduled_entries(app)[sync.occurrence_id(job.id)] == job.next_fire_at.timestamp()
    [event] = audits(app, system_job.id, "edit")
    assert set(event.after) == {"plan", "report_enabled", "report_recipients", "next_fire_at"}

    # Back to the plan its code declares.
    saved(admin.post(f"/jobs/{system_job.id}/edit", data=edit_job_form(
        admin, system_job.id, plan__kind="automatic", report_enabled="y", report_recipients="ops@example.org")))
    job = get_job(app, system_job.id)
    assert job.plan == {"kind": "automatic"}
    assert job.next_fire_at.astimezone(TZ).strftime("%H:%M") == "02:30"


# --- two administrators editing one job ------------------------------------------------------------

def posted_by(page: Node) -> dict:
    """What a browser submits for the job form on `page` (without pressing a refresh button)."""
    form = page.find("form", id="job-form")
    assert form is not None, "no job form on the page"
    data: dict[str, list[str]] = {}
    for node in form.iter():
        name = node.attrs.get("name")
        if not name or node.tag not in ("input", "select", "textarea"):
            continue
        if node.tag == "select":
            options = node.find_all("option")
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            data.setdefault(name, []).extend(o.attrs.get("value", o.text()) for o in chosen)
        elif node.tag == "textarea":
            data.setdefault(name, []).append(node.text())
        elif node.attrs.get("type") in ("checkbox", "radio"):
            if "checked" in node.attrs:
                data.setdefault(name, []).append(node.attrs.get("value", "on"))
        else:
            data.setdefault(name, []).append(node.attrs.get("value", ""))
    return {name: values[0] if len(values) == 1 else values for name, values in data.items()}


@pytest.fixture
def other_admin(app, domains):
    """A second superadmin in a browser of their own."""
    with app.app_context():
        username = make_user(Role.SUPERADMIN).username
    client = app.test_client()
    page = client.get("/login")
    assert client.post("/login", data={"username": username, "password": "pw",
                                       "csrf_token": csrf_from(page)}).status_code == 302
    client.username = username
    return client


def test_a_save_from_a_form_opened_before_another_admins_save_is_refused(app, admin, other_admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="cron", plan__expression="0 4 * * *")))
    # Both open the edit form of the job as it is.
    form_a = posted_by(html(admin.get(f"/jobs/{job_id}/edit")))
    form_b = posted_by(html(other_admin.get(f"/jobs/{job_id}/edit")))
    assert form_a["version"] == form_b["version"] == "1"

    saved(admin.post(f"/jobs/{job_id}/edit", data={**form_a, "description": "Twice a day.",
                                                   "plan-expression": "0 4,16 * * *"}))
    jobs, events = counts(app)
    response = other_admin.post(f"/jobs/{job_id}/edit", data={**form_b, "name": "Renamed by B"})
    assert response.status_code == 409
    page = html(response)
    [edit] = audits(app, job_id, "edit")
    at = edit.at.astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")
    conflict = page.find(id="edit-conflict")
    assert conflict.attrs["role"] == "alert"
    assert f"Changed by {admin.username} at {at} since you opened it" in conflict.text()
    assert "Description: Checks the workers every night. → Twice a day." in conflict.text()
    assert "Schedule: cron 0 4 * * * → cron 0 4,16 * * *" in conflict.text()
    # What B changed on the old form (only the name), to apply again.
    assert [li.text() for li in conflict.find("ul", class_="your-changes").find_all("li")] == \
        ["Name: Renamed by B"]
    # Nothing was written; A's change stands, and the form shows it, at the job's new version.
    assert counts(app) == (jobs, events)
    job = get_job(app, job_id)
    assert (job.name, job.description, job.plan["expression"], job.version) == \
        ("Nightly self-test", "Twice a day.", "0 4,16 * * *", 2)
    refreshed = posted_by(page)
    assert (refreshed["name"], refreshed["description"], refreshed["plan-expression"], refreshed["version"]) == \
        ("Nightly self-test", "Twice a day.", "0 4,16 * * *", "2")

    # B applies the change again on the refreshed form: it saves, and A's change stays.
    saved(other_admin.post(f"/jobs/{job_id}/edit", data={**refreshed, "name": "Renamed by B"}))
    job = get_job(app, job_id)
    assert (job.name, job.description, job.plan["expression"], job.version) == \
        ("Renamed by B", "Twice a day.", "0 4,16 * * *", 3)
    # A's form is now stale too.
    response = admin.post(f"/jobs/{job_id}/edit", data={**form_a, "description": "A again"})
    assert response.status_code == 409
    assert f"Changed by {other_admin.username}" in html(response).find(id="edit-conflict").text()
    assert get_job(app, job_id).description == "Twice a day."


def test_a_save_without_the_forms_version_is_refused_as_stale(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin)))
    form = posted_by(html(admin.get(f"/jobs/{job_id}/edit")))
    for version in (None, "", "x", "0", "²", "99999999999999999999"):
        data = {**form, "description": "Without a version"}
        if version is None:
            del data["version"]
        else:
            data["version"] = version
        response = admin.post(f"/jobs/{job_id}/edit", data=data)
        assert response.status_code == 409, version
        assert "changed since you opened it" in html(response).find(id="edit-conflict").text()
    assert get_job(app, job_id).description == "Checks the workers every night."
    saved(admin.post(f"/jobs/{job_id}/edit", data={**form, "description": "With it"}))
    assert get_job(app, job_id).description == "With it"


def test_an_edit_of_the_description_does_not_record_parameters_stored_without_defaults(ctx):
    # Stored with only some parameters, as system and demo jobs are; an edit of the description
    # alone must not report the parameters as changed (the conflict page and the audit showed
    # "duration=20 -> duration=20.0, fail_at_end=False, …").
    admin = make_user()
    job = make_job("Partial", params={"duration": 20, "lines_per_second": 2})
    data = editing.JobInput(name="Partial", description="New words", job_type=job.job_type,
                            scope=job.scope, domain_id=None, params={"duration": "20", "lines_per_second": "2"},
                            plan={"kind": "disabled"}, version=job.version)
    assert set(editing.update_job(admin, job, data)) == {"description"}
    edit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "edit", AuditEvent.object_id == job.id))
    assert set(edit.after) == {"description"}


def test_update_job_refuses_a_stale_version_and_writes_nothing(ctx, domains):
    from webapp.models import Domain

    alice, bob = make_user(username="alice"), make_user(username="bob")
    start = utcnow().replace(microsecond=0)
    data = editing.JobInput(name="Export", description="First", job_type="system.selftest", scope="domain",
                            domain_id=domains.study_a, plan={"kind": "interval", "every": "6", "unit": "hours"})
    job = editing.create_job(alice, data, now=start)
    assert job.version == 1
    # Saving no change leaves the version as it is.
    assert editing.update_job(alice, job, editing.JobInput(**{**vars(data), "version": 1}), now=start) == {}
    assert job.version == 1

    alices = editing.JobInput(**{**vars(data), "domain_id": domains.site_a1,
                                 "plan": {"kind": "interval", "every": "3", "unit": "hours"}, "version": 1})
    assert set(editing.update_job(alice, job, alices, now=start + timedelta(minutes=1))) == {"domain_id", "plan"}
    assert job.version == 2
    bobs = editing.JobInput(**{**vars(data), "description": "Bob's", "version": 1})
    with pytest.raises(editing.EditConflict) as refused:
        editing.update_job(bob, job, bobs, now=start + timedelta(minutes=2))
    [edit] = refused.value.edits
    assert edit.actor == "alice"
    assert edit.changes == [("Execution domain", "Study A", "Site A1"), ("Schedule", "every 6 hours", "every 3 hours")]
    assert refused.value.yours == [("Description", "Bob's")]

    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.description, job.domain_id, job.plan["every"], job.version) == ("First", domains.site_a1, 3, 2)
    assert db.session.get(Domain, domains.site_a1).name == "Site A1"
    assert [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))] == ["create", "edit"]
    # Invalid input on a stale form: still the conflict, with no values to re-apply.
    with pytest.raises(editing.EditConflict) as refused:
        editing.update_job(bob, job, editing.JobInput(**{**vars(bobs), "name": ""}))
    assert refused.value.yours is None and len(refused.value.edits) == 1
    # Without a version (a caller that reads and writes in one go) there is no check.
    editing.update_job(bob, job, editing.JobInput(**{**vars(bobs), "version": None}))
    assert (job.description, job.version) == ("Bob's", 3)


# --- remove, restore, delete ------------------------------------------------------------------------

def listed(client) -> dict[int, Node]:
    page = html(client.get("/jobs/"))
    return {int(row.attrs["id"].split("-")[1]): row for row in page.find_all("tr") if
            row.attrs.get("id", "").startswith("job-")}


def post_button(client, job_id, action):
    """Press one of the job page's buttons: the form with that action, its token, its confirmation."""
    page = html(client.get(f"/jobs/{job_id}"))
    form = page.find("form", action=f"/jobs/{job_id}/{action}")
    assert form is not None, f"no {action} button on the job page"
    assert form.attrs.get("data-confirm"), f"{action} asks no confirmation"
    token = form.find("input", name="csrf_token").attrs["value"]
    return client.post(f"/jobs/{job_id}/{action}", data={"csrf_token": token}), form.attrs["data-confirm"]


def test_remove_then_restore(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="cron", plan__expression="*/10 * * * *")))
    first = get_job(app, job_id).next_fire_at

    response, confirm = post_button(admin, job_id, "remove")
    assert "stops running on its plan" in confirm
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == f"/jobs/{job_id}"
    job = get_job(app, job_id)
    assert (job.state, job.next_fire_at) == ("removed", None)
    assert scheduled_entries(app) == {}
    page = html(admin.get(f"/jobs/{job_id}"))
    assert "“Nightly self-test” is removed: it no longer runs on its plan." in flashes(page)
    assert page.find("form", action=f"/jobs/{job_id}/remove") is None
    assert next_fires(admin, job_id) == []
    row = listed(admin)[job_id]  # still listed, with no next fire time
    assert "removed" in row.text() and row.find_all("td")[-2].text() == "—"
    [event] = audits(app, job_id, "remove")
    assert event.before == {"state": "active", "next_fire_at": first.isoformat()}
    assert event.after == {"state": "removed", "next_fire_at": None}

    # Removing twice says so and changes nothing.
    token = csrf_from(admin.get(f"/jobs/{job_id}"))
    admin.post(f"/jobs/{job_id}/remove", data={"csrf_token": token})
    assert "already removed" in flashes(html(admin.get(f"/jobs/{job_id}")))
    assert len(audits(app, job_id, "remove")) == 1

    before = utcnow()
    response, confirm = post_button(admin, job_id, "restore")
    after = utcnow()
    assert response.status_code == 302
    job = get_job(app, job_id)
    assert job.state == "active"
    # The first */10 slot from the moment of the restore.
    local = job.next_fire_at.astimezone(TZ)
    assert local.minute % 10 == 0 and local.second == 0
    assert before - timedelta(seconds=1) < job.next_fire_at and job.next_fire_at - timedelta(minutes=10) < after
    assert scheduled_entries(app) == {sync.occurrence_id(job_id): job.next_fire_at.timestamp()}
    assert listed(admin)[job_id].find_all("td")[-2].text() == job.next_fire_at.astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    [event] = audits(app, job_id, "restore")
    assert event.after == {"state": "active", "next_fire_at": job.next_fire_at.isoformat()}
    assert len(next_fires(admin, job_id)) == 5


def test_a_job_with_a_run_in_progress_can_be_removed_and_the_run_goes_on(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="poll", plan__seconds="60")))
    with app.app_context():
        run = Run(job_id=job_id, trigger=Trigger.HAND, status=RunStatus.IN_PROGRESS, started_at=utcnow())
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    response, _ = post_button(admin, job_id, "remove")
    assert response.status_code == 302
    assert get_job(app, job_id).state == "removed"
    with app.app_context():
        assert db.session.get(Run, run_id).status == RunStatus.IN_PROGRESS
    assert f"Run #{run_id} goes on." in flashes(html(admin.get(f"/jobs/{job_id}")))


def test_delete_hides_the_job_frees_its_name_and_keeps_its_files_and_audit(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, plan__kind="interval", plan__every="1",
                                                             plan__unit="hours")))
    with app.app_context():
        run = Run(job_id=job_id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED)
        db.session.add(run)
        db.session.flush()
        path = Path(app.config["FILES_DIR"]) / f"job-editing-test/{run.id}/out.csv"
        path.parent.mkdir(parents=True)
        path.write_text("a,b\n")
        db.session.add(RunFile(run_id=run.id, job_id=job_id, name="out.csv", path=str(path.relative_to(
            app.config["FILES_DIR"])), size=4, content_type="text/csv"))
        db.session.commit()
        run_id, file_id = run.id, db.session.scalar(select(RunFile.id).where(RunFile.run_id == run.id))
    assert scheduled_entries(app) != {}

    response, confirm = post_button(admin, job_id, "delete")
    assert "name can be used again" in confirm
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/jobs/"
    page = html(admin.get("/jobs/"))
    assert "“Nightly self-test” is deleted." in flashes(page)
    assert job_id not in listed(admin)
    assert admin.get(f"/jobs/{job_id}").status_code == 404
    assert admin.get(f"/jobs/{job_id}/edit").status_code == 404
    job = get_job(app, job_id)
    assert job.deleted_at is not None and job.next_fire_at is None
    assert scheduled_entries(app) == {}
    # Its run's file stays, on disk and downloadable; its audit trail stays.
    assert path.read_text() == "a,b\n"
    assert admin.get(f"/runs/files/{file_id}").get_data() == b"a,b\n"
    assert admin.get(f"/runs/{run_id}").status_code == 200
    assert [e.action for e in audits(app, job_id)] == ["create", "delete"]
    [event] = audits(app, job_id, "delete")
    assert event.before["name"] == "Nightly self-test" and event.after["deleted_at"] == job.deleted_at.isoformat()
    # The message's link leads to that history, which the deleted job's page no longer can.
    link = next(a for a in page.find_all("a") if a.text() == "audit page")
    history = html(admin.get(link.attrs["href"]))
    assert "Nightly self-test" in history.text() and "delete" in history.text()

    # The name can be used again.
    again = saved(admin.post("/jobs/new", data=new_job_form(admin)))
    assert again != job_id and get_job(app, again).name == "Nightly self-test"


def test_a_system_job_cannot_be_deleted_but_can_be_removed(app, admin, system_job):
    page = html(admin.get(f"/jobs/{system_job.id}"))
    assert page.find("form", action=f"/jobs/{system_job.id}/delete") is None
    assert "System jobs cannot be deleted." in page.text()

    token = csrf_from(admin.get(f"/jobs/{system_job.id}"))
    response = admin.post(f"/jobs/{system_job.id}/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert "is a system job and cannot be deleted" in flashes(html(admin.get(f"/jobs/{system_job.id}")))
    assert get_job(app, system_job.id).deleted_at is None
    assert audits(app, system_job.id, "delete") == []
    assert system_job.id in listed(admin)

    response, _ = post_button(admin, system_job.id, "remove")
    assert get_job(app, system_job.id).state == "removed"
    assert sync.occurrence_id(system_job.id) not in scheduled_entries(app)


def test_job_actions_need_the_csrf_token(app, admin):
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin)))
    for action in ("remove", "delete", "edit"):
        assert admin.post(f"/jobs/{job_id}/{action}", data={}).status_code == 400, action
    assert admin.post("/jobs/new", data={"name": "No token", "job_type": "system.selftest"}).status_code == 400
    job = get_job(app, job_id)
    assert (job.state, job.deleted_at) == ("active", None)
    assert job_named(app, "No token") is None


# --- the functions behind the pages, without HTTP ------------------------------------------------

def test_editing_functions_check_without_http(ctx, domains):
    from webapp.models import Domain, User

    admin_b = make_user(Role.DOMAIN_ADMIN, domain=db.session.get(Domain, domains.study_b))
    data = editing.JobInput(name="B job", job_type="system.selftest", scope="domain", domain_id=domains.study_a,
                            plan={"kind": "interval", "every": "5", "unit": "minutes"})
    with pytest.raises(editing.InvalidJob) as refused:
        editing.create_job(admin_b, data)
    assert set(refused.value.errors) == {"domain_id"}
    assert db.session.scalar(select(func.count(Job.id))) == 0

    data.domain_id = domains.study_b
    now = utcnow().replace(microsecond=0)
    job = editing.create_job(db.session.get(User, admin_b.id), data, now=now)
    assert job.plan["anchor"] == now.isoformat() and job.next_fire_at == now

    with pytest.raises(ValueError, match="“x@y” is not a valid email address"):
        valid_recipients("a@example.org, x@y")
    assert valid_recipients("a@example.org;b@example.org") == ["a@example.org", "b@example.org"]


def test_recipients_are_read_alike_by_the_form_and_the_mailer():
    text = " a@x.org,, B@y.org ;b@Y.org\na@x.org, not an address "
    # The mailer's reading: every entry once, none checked (it records the bad one on its delivery).
    assert parse_recipients(text) == ["a@x.org", "B@y.org", "not an address"]
    # The form's: the same entries, each checked; the first that is not an address is named.
    with pytest.raises(ValueError, match="“not an address” is not a valid email address"):
        valid_recipients(text)
    assert valid_recipients(text.replace(", not an address", "")) == ["a@x.org", "B@y.org"]
    assert valid_recipients("Ann@EXAMPLE.org, ann@example.org") == ["Ann@example.org"]


# --- bad input: a message next to the field, never a 500 ----------------------------------------

def _arabic_indic(number: int) -> str:
    return "".join("٠١٢٣٤٥٦٧٨٩"[int(digit)] for digit in str(number))


@pytest.mark.parametrize("domain_id", ["99999999999999999999", "2147483648", "-1", "0", "²", "1e3",
                                       "ARABIC", "LEADING_ZERO", "PADDED"])
def test_a_domain_id_out_of_range_or_not_canonical_is_refused_next_to_the_field(app, admin, domains, domain_id):
    # The last three name a real domain the admin may use, written the way no browser sends it.
    real = domains.study_a
    domain_id = {"ARABIC": _arabic_indic(real), "LEADING_ZERO": f"0{real}", "PADDED": f" {real}"}.get(
        domain_id, domain_id)
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=new_job_form(admin, scope="domain", domain_id=domain_id))
    assert response.status_code == 400
    assert error_next_to(html(response), "domain_id") == "Choose the domain the job runs in."
    assert counts(app) == (jobs, events)


def test_a_parameter_missing_from_the_post_keeps_its_value(app, admin):
    # A new job: the field's default, as when it is left blank.
    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, param__duration=None)))
    assert get_job(app, job_id).params["duration"] == 10.0
    # An edit: the job's own value, as the form showed it.
    saved(admin.post(f"/jobs/{job_id}/edit", data=edit_job_form(admin, job_id, param__duration="3")))
    saved(admin.post(f"/jobs/{job_id}/edit", data=edit_job_form(admin, job_id, description="Changed",
                                                                  param__duration=None,
                                                                  param__lines_per_second=None)))
    job = get_job(app, job_id)
    assert (job.description, job.params["duration"], job.params["lines_per_second"]) == ("Changed", 3.0, 1.0)


def test_a_required_parameter_missing_from_the_post_is_asked_for(app, admin, typed_params):
    jobs, events = counts(app)
    form = new_job_form(admin, job_type=typed_params.key, params_for=typed_params.key,
                        **{"param-duration": None, "param-lines_per_second": None})
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 400
    assert error_next_to(html(response), "param-folder") == "A value is required."
    assert counts(app) == (jobs, events)


def test_without_javascript_a_save_after_changing_the_type_shows_the_new_types_parameters(app, admin,
                                                                                          typed_params):
    jobs, events = counts(app)
    # The browser still shows the self-test's parameters: the folder import's were never seen.
    form = new_job_form(admin, job_type=typed_params.key, **{"param-folder": "forged/folder"})
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 400
    page = html(response)
    assert error_next_to(page, "job_type") == "Check the parameters of Folder import below, then save."
    assert value_of(page, "params_for") == typed_params.key
    assert value_of(page, "param-batch") == "100" and value_of(page, "param-folder") == ""
    assert page.find(data_field="param-duration") is None
    assert value_of(page, "name") == "Nightly self-test"
    assert counts(app) == (jobs, events)
    # The page as shown now saves (once the required folder is filled in).
    again = {**form, "params_for": typed_params.key, "param-folder": "incoming", "param-batch": "100"}
    job_id = saved(admin.post("/jobs/new", data=again))
    assert get_job(app, job_id).params == {"folder": "incoming", "batch": 100}


def test_without_javascript_a_save_after_changing_the_schedule_kind_shows_its_fields(app, admin):
    jobs, events = counts(app)
    form = new_job_form(admin, plan__kind="poll")
    form["plan-shown_kind"] = "disabled"  # the page showed the disabled plan: no seconds field
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 400
    page = html(response)
    assert error_next_to(page, "plan-kind") == "Check the fields of this schedule below, then save."
    assert value_of(page, "plan-seconds") == "" and value_of(page, "plan-shown_kind") == "poll"
    assert counts(app) == (jobs, events)


LONG = {
    "plan-expression": ({"plan__kind": "cron", "plan__expression": "0 4 * * *" + " " * 40_000}, 200),
    "plan-times": ({"plan__kind": "daily", "plan__days": ["1"], "plan__times": "08:00, " * 6000}, 400),
    "plan-start": ({"plan__kind": "period", "plan__start": "2031-01-01T08:00" + "0" * 5000,
                    "plan__repeat": "daily"}, 40),
    "plan-every": ({"plan__kind": "interval", "plan__every": "1" * 5000, "plan__unit": "hours"}, 20),
    "plan-seconds": ({"plan__kind": "poll", "plan__seconds": "6" * 5000}, 20),
    "name": ({"name": "n" * 121}, 120),
    "description": ({"description": "d" * 2001}, 2000),
    "report_recipients": ({"report_enabled": "y", "report_recipients": "a@example.org, " * 200}, 2000),
    "param-duration": ({"param__duration": "1" * 2001}, 2000),
}


@pytest.mark.parametrize("name", LONG)
def test_every_text_field_is_bounded(app, admin, name):
    fields, limit = LONG[name]
    jobs, events = counts(app)
    response = admin.post("/jobs/new", data=new_job_form(admin, **fields))
    assert response.status_code == 400
    assert error_next_to(html(response), name) == f"At most {limit} characters."
    assert counts(app) == (jobs, events)


def test_long_text_inputs_say_their_limit_to_the_browser(admin):
    page = html(admin.get("/jobs/new"))
    assert field_block(page, "description").find("textarea").attrs["maxlength"] == "2000"
    assert field_block(page, "report_recipients").find("input").attrs["maxlength"] == "2000"
    fields = html(admin.post("/jobs/new/plan-fields", data=new_job_form(admin, plan__kind="cron"),
                             headers={"HX-Request": "true"}))
    assert field_block(fields, "plan-expression").find("input").attrs["maxlength"] == "200"


def test_a_monthly_period_from_the_last_minute_of_year_9999_is_no_500(app, admin):
    plan = {"plan__kind": "period", "plan__start": "9999-12-31T23:59", "plan__repeat": "monthly"}
    last = datetime(9999, 12, 31, 22, 59, tzinfo=UTC)  # 23:59 in Amsterdam: the last minute there is
    fragment = admin.post("/jobs/new/plan-fields", data=new_job_form(admin, **plan), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fire_times(html(fragment)) == [last]
    body = preview(admin, kind="period", start="9999-12-31T23:59", repeat="monthly")
    assert body.status_code == 200 and fire_times(html(body)) == [last]

    job_id = saved(admin.post("/jobs/new", data=new_job_form(admin, **plan)))
    assert get_job(app, job_id).next_fire_at == last
    assert next_fires(admin, job_id) == [last]
    assert admin.get("/jobs/").status_code == 200
    assert admin.get(f"/jobs/{job_id}/edit").status_code == 200


def test_a_plan_with_no_fire_time_left_is_refused_next_to_its_field(ctx, monkeypatch):
    # In New York, 9999-12-31 23:59 is already in UTC year 10000.
    monkeypatch.setattr(sync, "timezone", lambda: ZoneInfo("America/New_York"))
    plan = {"kind": "period", "start": "9999-12-31T23:59", "repeat": "monthly"}
    with pytest.raises(editing.PlanError) as refused:
        editing.preview(plan, registry.get("system.selftest"))
    assert refused.value.errors == {"start": "This schedule has no fire time left: the calendar ends with the "
                                             "year 9999."}


@pytest.mark.parametrize("job_id", ["²", "ARABIC", "LEADING_ZERO", "99999999999999999999", "2147483648", "-1", ""])
def test_run_selected_ignores_ids_that_are_not_canonical(app, admin, job_id):
    with app.app_context():
        real = make_job("Ticked").id
    job_id = {"ARABIC": _arabic_indic(real), "LEADING_ZERO": f"0{real}"}.get(job_id, job_id)
    token = csrf_from(admin.get("/jobs/"))
    response = admin.post("/jobs/run", data={"csrf_token": token, "job_id": [job_id]})
    assert response.status_code == 302
    assert "Tick at least one job to run." in flashes(html(admin.get("/jobs/")))
    with app.app_context():
        assert db.session.scalar(select(func.count(Run.id))) == 0


# --- what a new user hit ---------------------------------------------------------------------------

def test_a_domain_admin_with_one_domain_is_not_asked_to_pick_it(app, sign_in, domains):
    client = sign_in(Role.DOMAIN_ADMIN, "study_b")  # Study B has no sites: one domain to choose from
    page = html(client.get("/jobs/new"))
    assert page.find("select", name="domain_id") is None
    assert all(legend.text() != "Execution" for legend in page.find_all("legend"))
    row = page.find(data_field="scope")
    assert "Execution" in row.text() and "By domain: Study B" in row.text()
    hidden = page.find("input", name="domain_id")
    assert hidden.attrs["type"] == "hidden" and hidden.attrs["value"] == str(domains.study_b)
    form = new_job_form(client, scope="domain", domain_id=str(domains.study_b))
    job = get_job(app, saved(client.post("/jobs/new", data=form)))
    assert (job.scope, job.domain_id) == ("domain", domains.study_b)


def test_a_domain_admin_with_several_domains_chooses_without_an_empty_heading(sign_in):
    client = sign_in(Role.DOMAIN_ADMIN, "study_a")  # Study A and its site
    page = html(client.get("/jobs/new"))
    assert page.find("select", name="domain_id") is not None
    assert all(legend.text() != "Execution" for legend in page.find_all("legend"))


def test_switching_to_a_period_reads_the_repeat_it_shows_and_empty_fields_are_no_error_yet(admin):
    token = csrf_from(admin.get("/jobs/new"))
    data = {"plan-kind": "period", "plan-shown_kind": "disabled", "job_type": "system.selftest"}
    fragment = html(admin.post("/jobs/new/plan-fields", data=data, headers={"HX-Request": "true", "X-CSRFToken": token}))
    repeat = fragment.find("select", name="plan-repeat")
    assert [o.attrs.get("value") for o in repeat.find_all("option") if "selected" in o.attrs] == ["daily"]
    shown = fragment.find(id="plan-preview").text()
    assert "Must be" not in shown and "required" not in shown
    assert "Fill in Start (date and time) to see the next fire times." in shown
    # Typed wrong is an error at once; typed right gives the fire times, daily.
    wrong = html(preview(admin, kind="period", start="soon", repeat="daily")).text()
    assert "Not a valid date and time" in wrong
    right = html(preview(admin, kind="period", start="2030-01-01T06:00", repeat="daily"))
    assert len(fire_times(right)) == 5 and "Daily from 2030-01-01 06:00" in right.text()
