"""Careless and hostile input on every route: never a 500.

Every rule in the app's URL map is asked for with ids no row can have or that are written oddly,
with query values and form fields holding NUL and other control characters, 10 KB strings and
Unicode digits; anonymously and signed in as a superadmin (with a valid CSRF token, and a valid
API token under /api). Every form the console shows is submitted with each of its fields missing
or hostile. Runs on SQLite, and on PostgreSQL (which cannot store NUL) with TEST_DATABASE_URL."""
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import quote, urlencode, urlsplit

import pytest
from werkzeug.datastructures import MultiDict

from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import ApiToken, Role, Run, RunFile, RunLogLine, RunStatus, Trigger

UTC = timezone.utc
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")

# Written into query strings and form fields.
HOSTILE_VALUES = {
    "nul": "a\x00b",
    "nul-only": "\x00",
    "control": "a\x01\x1bb",
    "crlf": "/x\r\nSet-Cookie: a=b",
    "10kb": "x" * 10_000,
    "superscript-two": "²",
    "arabic-three": "٣",
    "huge-number": "99999999999999999999",
    "negative": "-1",
    "percent-escape-as-text": "%ud800%00",
    "empty": "",
}


def hostile_ids(real: int) -> dict[str, str]:
    """Ids in a URL path: none may reach a view as a number, and none is a 500."""
    return {
        "beyond-64-bits": "99999999999999999999",
        "beyond-int32": str(2**31),
        "zero": "0",
        "negative": "-1",
        "superscript-two": "²",
        "unicode-digits": str(real).translate(ARABIC_INDIC),
        "leading-zero": f"0{real}",
        "plus": f"+{real}",
        "decimal": f"{real}.0",
        "nul": f"{real}\x00",
        "10kb": "9" * 10_000,
    }


# ---------------------------------------------------------------- the objects the routes name

@dataclass
class World:
    username: str
    ids: dict  # URL argument name -> a real id of that kind
    api_headers: dict = field(default_factory=dict)


def make_world() -> World:
    """A superadmin, a job in a domain with a planned occurrence, a finished run with a log line and
    an output file on disk, and an API token."""
    from flask import current_app

    admin = make_user(Role.SUPERADMIN, password="pw")
    job = make_job(domain=make_domain(), plan={"kind": "cron", "expression": "0 0 1 1 *"},
                   next_fire_at=datetime(2999, 1, 1, tzinfo=UTC))
    run = Run(job_id=job.id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED, progress=100,
              created_at=datetime(2024, 1, 1, tzinfo=UTC), finished_at=datetime(2024, 1, 1, 0, 1, tzinfo=UTC))
    db.session.add(run)
    db.session.flush()
    db.session.add(RunLogLine(run_id=run.id, seq=1, at=run.created_at, level="info", message="hello"))
    relative = f"runs/{run.id}/out.csv"
    os.makedirs(os.path.join(current_app.config["FILES_DIR"], f"runs/{run.id}"), exist_ok=True)
    with open(os.path.join(current_app.config["FILES_DIR"], relative), "wb") as handle:
        handle.write(b"a,b\n1,2\n")
    file = RunFile(run_id=run.id, job_id=job.id, name="out.csv", path=relative, size=8, content_type="text/csv")
    db.session.add(file)
    _, token = ApiToken.issue(admin)
    # Admin routes act on another user (the sweep must not reset the signed-in superadmin's password).
    other = make_user(Role.DOMAIN_ADMIN, domain=job.domain, password="pw")
    other_token, _ = ApiToken.issue(other, "sweep")
    db.session.commit()
    dataset = _dataset_with_a_value(job.domain_id)
    envelope = _envelope_of_a_project()
    ids = {"job_id": job.id, "jobId": job.id, "run_id": run.id, "runId": run.id, "file_id": file.id,
           "user_id": other.id, "domain_id": job.domain_id, "token_id": other_token.id,
           "name": "default",  # a queue (/queues/<name>/pause …)
           "dataset_id": dataset.id, "envelope_id": envelope.id}
    return World(admin.username, ids, {"Authorization": f"Bearer {token}"})


def _envelope_of_a_project():
    """A linkage project (so the envelopes page shows its upload form) with a refused envelope."""
    from webapp.models import Domain
    from webapp.models.linkage import LINKAGE_KIND, Envelope, EnvelopeStatus

    project = Domain(name="Registry H", kind=LINKAGE_KIND)
    db.session.add(project)
    db.session.flush()
    envelope = Envelope(project_id=project.id, name="h.csv", kind="csv", status=EnvelopeStatus.CORRUPT, reason="Refused.")
    db.session.add(envelope)
    db.session.commit()
    return envelope


def _dataset_with_a_value(domain_id):
    """A dataset of the domain selecting the one value it holds (the dataset form then offers an
    item check box, which the sweep fills with hostile values too)."""
    from webapp.models import (ClinicalOid, ClinicalRecord, Dataset, DatasetItem, ItemDef, ItemValue, OidKind,
                               Subject)

    event, form, group = (ClinicalOid(domain_id=domain_id, kind=kind, oid=f"{kind.upper()}.1")
                          for kind in (OidKind.EVENT, OidKind.FORM, OidKind.GROUP))
    item, subject = ItemDef(domain_id=domain_id, oid="I.1", name="Item"), Subject(domain_id=domain_id, subject_key="S1")
    db.session.add_all([event, form, group, item, subject])
    db.session.flush()
    record = ClinicalRecord(subject_id=subject.id, event_id=event.id, event_repeat="1", form_id=form.id,
                            group_id=group.id, group_repeat="1")
    db.session.add(record)
    db.session.flush()
    db.session.add(ItemValue(record_id=record.id, item_id=item.id, value="1"))
    dataset = Dataset(domain_id=domain_id, name="Hostile", items=[
        DatasetItem(event_id=event.id, form_id=form.id, group_id=group.id, item_id=item.id)])
    db.session.add(dataset)
    db.session.commit()
    return dataset


# ---------------------------------------------------------------- sending

@dataclass
class Caller:
    """A test client as one kind of user: anonymous, or a signed-in superadmin (who also sends
    the API token under /api, and a valid CSRF token with every form)."""
    name: str
    client: object
    world: World
    signed_in: bool
    csrf: str = ""

    def sign_in(self):
        page = self.client.get("/login")
        if page.status_code == 200:
            response = self.client.post("/login", data={"username": self.world.username, "password": "pw",
                                                        "csrf_token": csrf_from(page)})
            assert response.status_code == 302, response.get_data(as_text=True)[:500]
        self.csrf = csrf_from(self.client.get("/jobs/new"))

    def send(self, method, url, *, data=None, json_body=None, raw=None, content_type=None) -> int | str:
        """The status code, or the exception a request raised (a 500 whose error page failed too)."""
        headers = dict(self.world.api_headers) if self.signed_in and url.startswith("/api") else {}
        if method == "POST" and self.signed_in and json_body is None and raw is None:
            data = MultiDict(data or {})
            data.setdefault("csrf_token", self.csrf)
        kwargs = {"json": json_body} if json_body is not None else {"data": raw if raw is not None else data}
        try:
            response = self.client.open(url, method=method, headers=headers, content_type=content_type, **kwargs)
            status = response.status_code
            response.close()  # a live log stream ends here
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the sweep goes on
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        if self.signed_in and method == "POST" and urlsplit(url).path == "/logout":
            self.sign_in()  # signing out must not turn the rest of the sweep anonymous
        return status


class Sweep:
    """Collects every answer of 500 or more (or an exception) and reports them all at once."""

    def __init__(self):
        self.failures = []
        self.requests = 0

    def check(self, caller, method, url, status, what=""):
        self.requests += 1
        if not isinstance(status, int) or status >= 500:
            shown = url if len(url) < 150 else url[:150] + "…"
            self.failures.append(f"{caller.name} {method} {shown} {what[:150]} -> {status}")

    def assert_clean(self):
        assert not self.failures, f"{len(self.failures)} of {self.requests} requests failed:\n" + \
            "\n".join(self.failures[:80])


@pytest.fixture
def sweep_app(app):
    """The app answering as in production: an exception becomes the 500 page (which must not fail
    either) instead of propagating into the test."""
    previous = app.config.get("PROPAGATE_EXCEPTIONS")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    yield app
    app.config["PROPAGATE_EXCEPTIONS"] = previous


@pytest.fixture
def callers(sweep_app):
    with sweep_app.app_context():
        world = make_world()
    # Requests run outside any app context of the test, so each has its own, as in production.
    anonymous = Caller("anonymous", sweep_app.test_client(), world, signed_in=False)
    admin = Caller("superadmin", sweep_app.test_client(), world, signed_in=True)
    admin.sign_in()
    return [anonymous, admin]


ARG = re.compile(r"<(?:([a-zA-Z_]+)(?:\([^)]*\))?:)?([^<>]+)>")


def rule_url(rule, world, override: dict | None = None) -> str:
    """The rule's path with real ids, or with `override` for some arguments (percent-encoded)."""
    def value(match):
        converter, name = match.groups()
        if override and name in override:
            return quote(override[name], safe="")
        if converter == "path" or name == "filename":
            return "css/app.css"
        return str(world.ids[name])
    return ARG.sub(value, rule.rule)


def routes(app):
    return sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, rule.endpoint))


# ---------------------------------------------------------------- ids in the path

def test_ids_must_be_canonical_ascii_numbers_that_fit_a_column(ctx, client, login_as):
    """/jobs/٣ and /jobs/01 named job 3 and job 1; /jobs/99999999999999999999 was a 500."""
    job = make_job()
    login_as(make_user())
    assert client.get(f"/jobs/{job.id}").status_code == 200
    for written in (str(job.id).translate(ARABIC_INDIC), f"0{job.id}", f"00{job.id}", f"+{job.id}",
                    "99999999999999999999", str(2**31), str(2**63), "0", "²"):
        response = client.get(f"/jobs/{quote(written)}")
        assert response.status_code == 404, (written, response.status_code)
        assert not response.is_json and "404" in response.get_data(as_text=True)
    # The largest id a column holds is still an id (of no job here).
    assert client.get(f"/jobs/{2**31 - 1}").status_code == 404
    # Links are still written the one canonical way.
    from flask import url_for

    with ctx.test_request_context():
        assert url_for("jobs.detail", job_id=job.id) == f"/jobs/{job.id}"


def test_the_api_takes_the_same_ids(ctx, client):
    job = make_job()
    _, token = ApiToken.issue(make_user())
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/scheduled-jobs/{job.id}", headers=headers).status_code == 200
    for written in (str(job.id).translate(ARABIC_INDIC), f"0{job.id}", "99999999999999999999", "0"):
        response = client.get(f"/api/scheduled-jobs/{quote(written)}", headers=headers)
        assert response.status_code == 404 and response.is_json, written
    doc = client.get("/api/openapi.json").get_json()
    param = doc["paths"]["/api/scheduled-jobs/{jobId}"]["parameters"][0]
    assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def test_every_route_refuses_hostile_ids_without_a_500(callers, sweep_app):
    sweep = Sweep()
    for rule in routes(sweep_app):
        names = [name for converter, name in ARG.findall(rule.rule) if converter in ("", "int")]
        names = [name for name in names if name in callers[0].world.ids]
        for name in names:
            for label, written in hostile_ids(callers[0].world.ids[name]).items():
                url = rule_url(rule, callers[0].world, {name: written})
                for caller in callers:
                    for method in ("GET", "POST"):
                        status = caller.send(method, url)
                        sweep.check(caller, method, url, status, label)
                        if isinstance(status, int) and method in rule.methods:
                            # No odd spelling of an id reaches a view: the route does not match.
                            assert status in (400, 404, 405), (caller.name, method, url, status)
    sweep.assert_clean()


# ---------------------------------------------------------------- values in queries and forms

QUERY_NAMES = ("q", "status", "sort", "dir", "page", "next", "fromDate", "toDate", "limit", "offset", "x")


def test_every_route_takes_hostile_query_values_and_form_fields_without_a_500(callers, sweep_app):
    sweep = Sweep()
    form_names = sorted(_all_form_field_names(callers[1]) - {"csrf_token"})
    for rule in routes(sweep_app):
        url = rule_url(rule, callers[0].world)
        for label, value in HOSTILE_VALUES.items():
            query = urlencode({name: value for name in QUERY_NAMES})
            for caller in callers:
                sweep.check(caller, "GET", f"{url}?{query}", caller.send("GET", f"{url}?{query}"), label)
                form = {name: value for name in form_names}
                sweep.check(caller, "POST", url, caller.send("POST", url, data=form), label)
                if url.startswith("/api"):
                    sweep.check(caller, "POST", url, caller.send("POST", url, json_body={"args": value}), label)
        # Bytes that are not UTF-8 (a lone surrogate's encoding, 0xFF) in the query and the bodies.
        query = "&".join(f"{name}=%ff%ed%a0%80" for name in QUERY_NAMES)
        for caller in callers:
            sweep.check(caller, "GET", f"{url}?{query}", caller.send("GET", f"{url}?{query}"), "not UTF-8")
            body = f"csrf_token={caller.csrf}&" + "&".join(f"{quote(name)}=%ff%ed%a0%80" for name in form_names)
            status = caller.send("POST", url, raw=body, content_type="application/x-www-form-urlencoded")
            sweep.check(caller, "POST", url, status, "form not UTF-8")
            status = caller.send("POST", url, raw=b'{"args": "\xff\xed\xa0\x80"}', content_type="application/json")
            sweep.check(caller, "POST", url, status, "JSON not UTF-8")
    sweep.assert_clean()


def test_a_nul_anywhere_is_refused_before_any_view(ctx, client, login_as):
    """PostgreSQL text cannot hold NUL: the find box, the sign-in name, a job's name and run
    arguments were 500s there. Now every NUL is a 400, on SQLite too."""
    response = client.post("/login", data={"username": "ad\x00min", "password": "pw",
                                           "csrf_token": csrf_from(client.get("/login"))})
    assert response.status_code == 400 and "control character" in response.get_data(as_text=True)
    login_as(make_user())
    job = make_job()
    token = csrf_from(client.get("/jobs/new"))
    for method, url, data in (
        ("GET", "/jobs/?q=a%00b", None),
        ("GET", "/jobs/?q=%01", None),
        ("GET", f"/jobs/{job.id}?status=%00", None),
        ("GET", "/login?next=/jobs/%0d%0aSet-Cookie:x=y", None),
        ("POST", "/jobs/new", {"name": "N\x00", "description": "d", "csrf_token": token}),
        ("POST", "/jobs/new", {"name": "N", "description": "line\x00", "csrf_token": token}),
        ("POST", f"/jobs/{job.id}/run", {"args": "duration=0\x00", "csrf_token": token}),
        ("POST", f"/jobs/{job.id}/run", {"args\x00": "duration=0", "csrf_token": token}),
        ("GET", "/jobs/%00", None),
    ):
        response = client.open(url, method=method, data=data)
        assert response.status_code == 400, (method, url, response.status_code)
        assert not response.is_json and "control character" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(Run)) == 0


def test_tabs_and_line_breaks_in_text_are_text(app, client, login_as):
    # Outside the test's app context: each request has its own, as in production.
    with app.app_context():
        user, job = make_user(), make_job()
        signed_in, job_id = SimpleNamespace(username=user.username), job.id
    login_as(signed_in)
    response = client.post(f"/jobs/{job_id}/run", data={"args": "duration=0\tfail_at_end=no\r\n",
                                                        "csrf_token": csrf_from(client.get(f"/jobs/{job_id}"))})
    assert response.status_code == 302 and "/runs/" in response.headers["Location"]
    with app.app_context():
        assert db.session.scalar(db.select(Run.args)) == "duration=0\tfail_at_end=no\r\n"


def test_over_long_query_values_are_400(ctx, client, login_as):
    login_as(make_user())
    response = client.get("/jobs/?q=" + "x" * 5000)
    assert response.status_code == 400 and "longer than" in response.get_data(as_text=True)
    assert client.get("/jobs/?q=" + "x" * 200).status_code == 200


def test_api_refuses_nul_and_control_characters_as_json(ctx, client):
    job = make_job()
    _, token = ApiToken.issue(make_user())
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    for url, kwargs in ((f"/api/scheduled-jobs/{job.id}/runs", {"json": {"args": "a\u0000"}}),
                        (f"/api/scheduled-jobs/{job.id}/runs", {"json": {"args\u0000": ""}}),
                        (f"/api/scheduled-jobs/{job.id}/runs", {"json": {"args": "\u0007"}}),
                        (f"/api/scheduled-jobs/{job.id}/runs?limit=1%00", {"method": "GET"})):
        response = client.open(url, method=kwargs.pop("method", "POST"), headers=headers, **kwargs)
        assert response.status_code == 400 and response.is_json, (url, kwargs, response.status_code)
        assert response.get_json()["code"] == 400 and "control character" in response.get_json()["message"]


# ---------------------------------------------------------------- bodies

def test_deeply_nested_json_is_400_not_a_recursion_error(ctx, client):
    job = make_job()
    _, token = ApiToken.issue(make_user())
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/scheduled-jobs/{job.id}/runs"
    for body in ("[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"args": ' + "[" * 50_000 + "]" * 50_000 + "}",
                 "[" * 40 + "]" * 40):
        response = client.post(url, headers=headers, data=body, content_type="application/json")
        assert response.status_code == 400 and response.is_json, (body[:20], response.status_code)
        assert response.get_json()["message"]
    # A number Python will not read (over 4300 digits) is refused as well, not a ValueError.
    for body in ('{"args": 1' + "1" * 5000 + "}", "1" * 5000):
        response = client.post(url, headers=headers, data=body, content_type="application/json")
        assert response.status_code == 400 and response.is_json, (body[:20], response.status_code)
    # Also where no view reads JSON at all: the guard is app-wide.
    for body in ("[" * 100_000, "9" * 5000):
        assert client.post("/login", data=body, content_type="application/json").status_code == 400
    assert db.session.scalar(db.select(db.func.count()).select_from(Run)) == 0


def test_a_body_over_the_size_limit_is_413(ctx, client, login_as):
    limit = ctx.config["MAX_CONTENT_LENGTH"]
    job = make_job()
    _, token = ApiToken.issue(make_user())
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    big = json.dumps({"args": "x" * limit})
    response = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers, data=big,
                           content_type="application/json")
    assert response.status_code == 413 and response.is_json and response.get_json()["code"] == 413
    response = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers, data="x" * (limit + 1),
                           content_type="text/plain")
    assert response.status_code == 413 and response.is_json

    login_as(make_user())
    token = csrf_from(client.get("/jobs/new"))
    for data in ({"name": "x" * (limit + 1), "csrf_token": token},
                 {"name": "big", "upload": (io.BytesIO(b"x" * (limit + 1)), "big.bin"),
                  "csrf_token": token}):
        response = client.post("/jobs/new", data=data)
        assert response.status_code == 413, response.status_code
        assert not response.is_json and "413" in response.get_data(as_text=True)
    response = client.post("/login", data={"username": "u", "password": "p" * (limit + 1)})
    assert response.status_code == 413


def test_a_view_may_take_larger_uploads(app):
    """max_request_bytes raises the limit for one view only, before the guard reads the body."""
    from webapp.guards import max_request_bytes

    from flask import request

    from config import TestConfig
    from webapp import create_app

    limit = app.config["MAX_CONTENT_LENGTH"]

    @max_request_bytes(limit * 3)
    def upload():
        return str(len(request.get_data()))

    fresh = create_app(TestConfig)  # Flask allows no new route once an app has served a request
    fresh.config["WTF_CSRF_CHECK_DEFAULT"] = False
    fresh.add_url_rule("/test-upload", view_func=upload, methods=["POST"])
    client = fresh.test_client()
    assert client.post("/test-upload", data=b"x" * (limit * 2)).get_data(as_text=True) == str(limit * 2)
    assert client.post("/test-upload", data=b"x" * (limit * 4)).status_code == 413


# ---------------------------------------------------------------- what a browser keeps

def test_pages_and_api_answers_are_not_kept_by_browsers_or_proxies(callers):
    """A shared computer's back button or a proxy must not show a signed-in user's pages again."""
    anonymous, admin = callers
    ids = admin.world.ids
    for path in ("/jobs/", f"/jobs/{ids['job_id']}", "/jobs/new", f"/jobs/{ids['job_id']}/edit",
                 f"/runs/{ids['run_id']}", f"/runs/{ids['run_id']}/status", f"/runs/{ids['run_id']}/stream",
                 f"/runs/files/{ids['file_id']}", "/healthz", "/jobs/999999", "/api/scheduled-jobs",
                 f"/api/scheduled-jobs/{ids['job_id']}/runs/{ids['run_id']}",
                 f"/api/scheduled-jobs/{ids['job_id']}/runs/{ids['run_id']}/result-file",
                 "/api/scheduled-jobs/999999", "/api/openapi.json"):
        response = admin.client.get(path, headers=admin.world.api_headers if path.startswith("/api") else {})
        assert response.status_code in (200, 404), (path, response.status_code)
        assert response.headers.get("Cache-Control") == "no-store", (path, response.headers.get("Cache-Control"))
        response.close()
    for path in ("/login", "/api/scheduled-jobs", "/healthz"):
        assert anonymous.client.get(path).headers.get("Cache-Control") == "no-store", path
    static = anonymous.client.get("/static/css/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
    static.close()


# ---------------------------------------------------------------- every form the console shows

class FormParser(HTMLParser):
    """The forms on a page as a browser submits them: action, fields with their values, the choices
    of each select, and the URLs HTMX posts the form to."""

    def __init__(self):
        super().__init__()
        self.forms, self._form, self._select, self._textarea = [], None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            self._form = {"action": a.get("action") or "", "fields": [], "choices": {}, "hx": set()}
            self.forms.append(self._form)
        if self._form is None:
            return
        if "hx-post" in a:
            self._form["hx"].add(a["hx-post"])
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio"):
                self._form["choices"].setdefault(name, []).append(a.get("value", "on"))
                if "checked" in a:
                    self._form["fields"].append((name, a.get("value", "on")))
            else:
                self._form["fields"].append((name, a.get("value", "")))
        elif tag == "select" and name:
            self._select = {"name": name, "selected": [], "first": None}
            self._form["choices"][name] = []
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._form["choices"][self._select["name"]].append(value)
            self._select["first"] = value if self._select["first"] is None else self._select["first"]
            if "selected" in a:
                self._select["selected"].append(value)
        elif tag == "textarea" and name:
            self._textarea = [name, ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None:
            chosen = self._select["selected"] or ([self._select["first"]] if self._select["first"] is not None else [])
            self._form["fields"].extend((self._select["name"], value) for value in chosen)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self._form["fields"].append((self._textarea[0], self._textarea[1].lstrip("\n")))
            self._textarea = None


def forms_on(caller, path):
    response = caller.client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    parser = FormParser()
    parser.feed(response.get_data(as_text=True))
    for form in parser.forms:
        form["action"] = urlsplit(form["action"]).path or path
    return parser.forms


def _pages(world):
    return ["/jobs/", f"/jobs/{world.ids['job_id']}", "/jobs/new", f"/jobs/{world.ids['job_id']}/edit",
            f"/runs/{world.ids['run_id']}", "/queues/", "/datasets/", "/datasets/new",
            f"/datasets/{world.ids['dataset_id']}", f"/datasets/{world.ids['dataset_id']}/edit", "/archive/",
            "/envelopes/", f"/envelopes/{world.ids['envelope_id']}"]


def _all_form_field_names(caller) -> set[str]:
    forms = [form for path in _pages(caller.world) for form in forms_on(caller, path)]
    return {name for form in forms for name in [*(name for name, _ in form["fields"]), *form["choices"]]}


def _variants(form):
    """(label, fields, also_htmx): the form as shown; then each field missing, hostile, or set to
    each of its choices (a no-JavaScript submit after switching the job type or the kind of plan).
    The HTMX fragments of a form render its fields again and read only the plan the way saving
    does, so they get hostile values in the plan fields only (the save gets them in every field)."""
    fields = form["fields"]
    names = list(dict.fromkeys(name for name, _ in fields) | dict.fromkeys(form["choices"]))
    yield "as shown", fields, True
    for name in names:
        if name == "csrf_token":
            continue
        others = [(n, v) for n, v in fields if n != name]
        yield f"{name} missing", others, True
        for label, value in HOSTILE_VALUES.items():
            yield f"{name}={label}", others + [(name, value)], name.startswith("plan-")
        for choice in form["choices"].get(name, []):
            yield f"{name}={choice!r}", others + [(name, choice)], True
    # A period plan whose next month is past year 9999.
    plan = [(n, v) for n, v in fields if not n.startswith("plan-")]
    yield "period plan at 9999-12-31", plan + [("plan-kind", "period"), ("plan-shown_kind", "period"),
                                               ("plan-start", "9999-12-31T23:59"), ("plan-repeat", "monthly")], True


def test_every_form_takes_missing_and_hostile_fields_without_a_500(callers, sweep_app):
    anonymous, admin = callers
    sweep = Sweep()
    # The sign-in form, as anyone sees it.
    for form in forms_on(anonymous, "/login"):
        for label, pairs, _ in _variants(form):
            status = anonymous.send("POST", form["action"], data=MultiDict(pairs))
            sweep.check(anonymous, "POST", form["action"], status, label)
    for path in _pages(admin.world):
        for form in forms_on(admin, path):
            if form["action"] in ("/logout",) or form["action"].endswith("/delete"):
                continue  # leaves nothing to sweep after it; both are covered with hostile ids and values
            targets = [form["action"], *sorted(urlsplit(url).path for url in form["hx"])]
            for label, pairs, also_htmx in _variants(form):
                for target in targets if also_htmx else targets[:1]:
                    status = admin.send("POST", target, data=MultiDict(pairs))
                    sweep.check(admin, "POST", target, status, label)
    sweep.assert_clean()
