"""Every route × every role, from one table: who may reach it, and what everybody else gets.

`ACCESS` names, for each endpoint of the app, who may use it:

- PUBLIC      anyone, signed in or not (sign-in page, health, static files, the API's description)
- SIGNED_IN   any signed-in person; objects (jobs, runs, files) only if the user may see them, and
              404 for objects of other domains, exactly as if they did not exist
- SUPERADMIN  superadmins only; to everyone else the route does not exist (404)
- API         a bearer token; the same object rules as SIGNED_IN
- SIGN_OUT    signing out: any session
- SUPPORT     the support page: the roles the `support_roles` setting names (superadmins by default);
              404 to everyone else, signed out included (permissions.can_use_support)

`test_every_route_is_in_the_matrix` walks `app.url_map` and fails for a route that is not in the
table, so that no later route slips through untested. The other tests check each kind for every
role of test_permissions' world (Study A with sites, Study B, an installation job).
"""
from urllib.parse import urlsplit

import pytest
from werkzeug.routing import Rule

from tests.factories import csrf_from
from tests.integration.test_permissions import (  # noqa: F401  (fixtures)
    _quick_password_hashes, sign_in, user_for, world)
from webapp.extensions import db
from webapp.models import ApiToken, User

PUBLIC, SIGNED_IN, SUPERADMIN, API, SIGN_OUT = "public", "signed in", "superadmin", "api", "sign out"
SUPPORT = "support"

ACCESS = {
    "static": PUBLIC,
    "auth.login": PUBLIC,
    "main.healthz": PUBLIC,
    "api-docs.openapi_json": PUBLIC,
    "auth.logout": SIGN_OUT,
    "main.index": PUBLIC,  # a redirect to the dashboard, which asks for sign-in
    "dashboard.index": SIGNED_IN,
    "jobs.list": SIGNED_IN,
    "jobs.detail": SIGNED_IN,
    "jobs.delete": SIGNED_IN,
    "jobs.edit": SIGNED_IN,
    "jobs.plan_fields": SIGNED_IN,
    "jobs.type_fields": SIGNED_IN,
    "jobs.plan_preview": SIGNED_IN,
    "jobs.remove": SIGNED_IN,
    "jobs.restore": SIGNED_IN,
    "jobs.run_now": SIGNED_IN,
    "jobs.plan_save": SIGNED_IN,
    "jobs.skip_next": SIGNED_IN,
    "jobs.new": SIGNED_IN,
    "jobs.run_selected": SIGNED_IN,
    "runs.detail": SIGNED_IN,
    "runs.cancel": SIGNED_IN,
    "runs.status": SIGNED_IN,
    "runs.live": SIGNED_IN,
    "runs.download": SIGNED_IN,
    "executions.list": SIGNED_IN,
    "audit.list": SIGNED_IN,
    "admin.users": SUPERADMIN,
    "dashboard.live": SIGNED_IN,
    "dashboard.summary": SIGNED_IN,
    "jobs.remove_selected": SIGNED_IN,
    "jobs.restore_selected": SIGNED_IN,
    "runs.popup": SIGNED_IN,
    "runs.log_download": SIGNED_IN,
    "executions.details": SIGNED_IN,
    "executions.audit": SIGNED_IN,
    "executions.retry": SIGNED_IN,
    "executions.cancel": SIGNED_IN,
    "audit.export_csv": SIGNED_IN,
    "queues.index": SIGNED_IN,
    "queues.workers": SIGNED_IN,
    "queues.cancel_run": SIGNED_IN,
    "queues.skip": SIGNED_IN,
    # Pause, resume, clear and pause on failure: superadmins and system administrators
    # (permissions.can_manage_queues); 404 to domain administrators (test_queues_control_page).
    "queues.pause": SIGNED_IN,
    "queues.resume": SIGNED_IN,
    "queues.clear": SIGNED_IN,
    "queues.pause_on_failure": SIGNED_IN,
    "admin.user_new": SUPERADMIN,
    "admin.user_detail": SUPERADMIN,
    "admin.user_deactivate": SUPERADMIN,
    "admin.user_reactivate": SUPERADMIN,
    "admin.user_password": SUPERADMIN,
    "admin.token_new": SUPERADMIN,
    "admin.token_revoke": SUPERADMIN,
    "admin.domains": SUPERADMIN,
    "admin.domain_detail": SUPERADMIN,
    "admin.domain_delete": SUPERADMIN,
    "admin.settings": SUPERADMIN,
    "api.ScheduledJobs": API,
    "api.ScheduledJob": API,
    "api.JobRuns": API,
    "api.JobRun": API,
    "api.JobRunFile": API,
    # Datasets: those of the domains the user sees (permissions.datasets_query), 404 for the rest.
    "datasets.list": SIGNED_IN,
    "datasets.new": SIGNED_IN,
    "datasets.items": SIGNED_IN,
    "datasets.detail": SIGNED_IN,
    "datasets.edit": SIGNED_IN,
    "datasets.delete": SIGNED_IN,
    "datasets.export_now": SIGNED_IN,
    # The archive of exported files: the export files of the jobs the user sees (archive_query).
    "archive.list": SIGNED_IN,
    # The hidden support page (script jobs): 404 to all but the support roles, signed out included.
    "support.index": SUPPORT,
    "support.new": SUPPORT,
    "support.detail": SUPPORT,
    "support.edit": SUPPORT,
    "support.diff": SUPPORT,
    "support.run_now": SUPPORT,
    "support.archive": SUPPORT,
    "support.restore": SUPPORT,
    # The envelopes page: envelopes and runs of the projects the user sees (permissions.envelopes_query,
    # runs_query), 404 for the rest; test_envelopes_page checks each role.
    "envelopes.index": SIGNED_IN,
    "envelopes.envelope": SIGNED_IN,
    "envelopes.notifications": SIGNED_IN,
    "envelopes.run": SIGNED_IN,
    "envelopes.upload": SIGNED_IN,
    "envelopes.rollback": SIGNED_IN,
    "envelopes.cancel": SIGNED_IN,
    "envelopes.retry": SIGNED_IN,
}

# Path arguments that name an object of a domain, and the world's object in Study A to use.
DOMAIN_OBJECTS = {"job_id": "jobs", "jobId": "jobs", "run_id": "runs", "runId": "runs", "file_id": "files",
                  "dataset_id": "datasets", "envelope_id": "envelopes"}
SIGNED_IN_ROLES = ("superadmin", "sysadmin", "admin_a", "admin_b", "admin_a1")


@pytest.fixture(autouse=True)
def _datasets_of_the_world(request):
    """test_permissions' world with a dataset and an envelope in each study (world.datasets,
    world.envelopes: key -> id)."""
    if "world" not in request.fixturenames:
        return
    world, app = request.getfixturevalue("world"), request.getfixturevalue("app")
    from webapp.models import Dataset
    from webapp.models.linkage import Envelope, EnvelopeStatus

    with app.app_context():
        made = {key: Dataset(domain_id=world.domains[name], name=f"{name} dataset")
                for key, name in (("a", "Study A"), ("b", "Study B"))}
        db.session.add_all(made.values())
        # And an envelope in each (a refused upload: an envelope without a file or a chain).
        envelopes = {key: Envelope(project_id=world.domains[name], name=f"{name}.csv", kind="csv",
                                   status=EnvelopeStatus.CORRUPT, reason="Refused.")
                     for key, name in (("a", "Study A"), ("b", "Study B"))}
        db.session.add_all(envelopes.values())
        db.session.commit()
        world.datasets = {key: dataset.id for key, dataset in made.items()}
        world.envelopes = {key: envelope.id for key, envelope in envelopes.items()}


def rules(app) -> list[Rule]:
    return sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, rule.endpoint))


def path_args(rule) -> set[str]:
    """The arguments the path itself carries (not those a rule's defaults fix, like /jobs/new/…)."""
    return set(rule.arguments) - set(rule.defaults or {})


def methods(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def url_of(rule, world, domain_key="a") -> str:
    """The rule's path with every argument filled: objects of `domain_key` for domain objects
    (the run and file of job a belong to job a), the number 1 for anything else."""
    values = {}
    for name in path_args(rule):
        if name in DOMAIN_OBJECTS:
            values[name] = getattr(world, DOMAIN_OBJECTS[name])[domain_key]
        elif name == "filename":
            values[name] = "css/app.css"
        else:
            values[name] = 1
    return rule.build(values)[1]


def request(client, method, url, token=None):
    data = {"csrf_token": token} if token and method != "GET" else None
    response = client.open(url, method=method, data=data, buffered=False)
    status, location = response.status_code, response.headers.get("Location", "")
    response.close()  # a live stream ends here
    return status, location


def test_every_route_is_in_the_matrix(app):
    missing = [f"{rule.endpoint} {rule.rule}" for rule in rules(app) if rule.endpoint not in ACCESS]
    assert not missing, "Routes without an entry in ACCESS (add them, and what each role gets):\n" + "\n".join(missing)
    stale = set(ACCESS) - {rule.endpoint for rule in rules(app)}
    assert not stale, f"ACCESS names endpoints that no longer exist: {sorted(stale)}"


def test_signed_out_visitors_reach_only_public_routes(app, client, world):
    token = csrf_from(client.get("/login"))
    for rule in rules(app):
        kind = ACCESS[rule.endpoint]
        for method in methods(rule):
            url = url_of(rule, world)
            status, location = request(client, method, url, token)
            where = f"{method} {url} ({rule.endpoint})"
            if kind == PUBLIC:
                assert status < 400 or (method == "POST" and status == 400), where  # a sign-in with no fields
            elif kind == API:
                assert status == 401, where
            elif kind == SUPPORT:
                assert status == 404, where  # nothing tells the page exists
            else:
                assert status == 302 and urlsplit(location).path == "/login", where


@pytest.mark.parametrize("role", ["sysadmin", "admin_a", "admin_b", "admin_a1"])
def test_superadmin_routes_do_not_exist_for_anyone_else(app, world, sign_in, role):
    client, token = sign_in(role)
    for rule in rules(app):
        if ACCESS[rule.endpoint] not in (SUPERADMIN, SUPPORT):  # support: by the default setting
            continue
        for method in methods(rule):
            url = url_of(rule, world)
            assert request(client, method, url, token)[0] == 404, f"{role}: {method} {url}"


def test_superadmins_reach_their_routes(app, world, sign_in):
    client, _ = sign_in("superadmin")
    for rule in rules(app):
        if ACCESS[rule.endpoint] in (SUPERADMIN, SUPPORT) and "GET" in rule.methods and not path_args(rule):
            status, _ = request(client, "GET", url_of(rule, world))
            assert status == 200, rule.rule


@pytest.mark.parametrize("role", SIGNED_IN_ROLES)
def test_signed_in_pages_answer_every_role_and_hide_other_domains_objects(app, world, sign_in, role):
    """Pages without objects answer every signed-in role. A route on an object of Study A answers
    404 to the Study B administrator, for every method, before it changes anything; to those who
    may see Study A its pages answer."""
    client, token = sign_in(role)
    sees_a = role in ("superadmin", "sysadmin", "admin_a")
    for rule in rules(app):
        if ACCESS[rule.endpoint] != SIGNED_IN:
            continue
        on_object = bool(path_args(rule) & set(DOMAIN_OBJECTS))
        for method in methods(rule):
            url = url_of(rule, world)
            where = f"{role}: {method} {url} ({rule.endpoint})"
            if on_object and not sees_a:
                assert request(client, method, url, token)[0] == 404, where
            elif method == "GET":
                status, location = request(client, "GET", url)
                assert status in (200, 302) and urlsplit(location).path != "/login", where


@pytest.mark.parametrize("role", ["admin_b", "admin_a"])
def test_api_routes_hide_other_domains_objects(app, world, user_for, role):
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == user_for(role)))
        _, plain = ApiToken.issue(user, "matrix")
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {plain}"}
    for rule in rules(app):
        if ACCESS[rule.endpoint] != API or not path_args(rule) & set(DOMAIN_OBJECTS):
            continue
        url = url_of(rule, world)
        response = client.get(url, headers=headers)
        if role == "admin_b":
            assert response.status_code == 404, f"{role}: GET {url}"
            assert response.is_json
        else:
            assert response.status_code in (200, 409), f"{role}: GET {url}"  # 409: the run has no file yet


def test_signing_out_needs_a_session_and_a_token(app, world, sign_in):
    client, token = sign_in("admin_a")
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.get("/jobs/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/jobs/").status_code == 302

