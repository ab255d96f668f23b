"""Who sees what (SPEC section 1), checked the way a user would meet it: the jobs list, every
page and POST of a job, run or file, and the permission functions themselves.

The world: domains Study A (with sub-domains Site A1 and Site A2) and Study B; one job run by
installation, one in Study A, one in Site A1, one in Study B, and a deleted job in Study A.
Each live job has a queued run with an output file on disk. No worker is started: a queued
run simply stays queued.

HTTP requests are made with no application context held by the test, so that every request
gets its own context (and its own `g` and database session) as in real use; the test's own
database reads happen in short `with app.app_context()` blocks.
"""
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from werkzeug.exceptions import NotFound
from werkzeug.security import generate_password_hash

from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.auth import permissions
from webapp.extensions import db
from webapp.jobs import editing
from webapp.jobs.editing import JobInput
from webapp.jobtypes import registry
from webapp.jobtypes.registry import JobType
from webapp.models import Job, Role, Run, RunFile, RunStatus, Setting, Trigger, User
from webapp.models.audit import record
from webapp.models.types import utcnow

JOBS = ("install", "a", "a1", "b")
NAMES = {"install": "Installation job", "a": "Study A job", "a1": "Site A1 job", "b": "Study B job"}
DELETED_NAME = "Retired Study A job"

# Every kind of person of SPEC section 1 that signs in (system accounts cannot: see test_auth).
ROLES = {
    "superadmin": dict(role=Role.SUPERADMIN),
    "sysadmin": dict(role=Role.SYSADMIN, supervised=("Study A",)),  # supervises Study A
    "admin_a": dict(role=Role.DOMAIN_ADMIN, domain="Study A"),
    "admin_b": dict(role=Role.DOMAIN_ADMIN, domain="Study B"),
    "admin_a1": dict(role=Role.DOMAIN_ADMIN, domain="Site A1"),  # a sub-domain: sees nothing above it
}
VISIBLE = {
    "superadmin": {"install", "a", "a1", "b"},
    "sysadmin": {"install", "a", "a1"},
    "admin_a": {"a", "a1"},
    "admin_b": {"b"},
    "admin_a1": {"a1"},
}


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    """Password hashing is not what these tests are about (test_auth checks it); a cheap hash
    keeps the many sign-ins here fast. Checking reads the method from the stored hash."""
    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


@dataclass
class World:
    domains: dict = field(default_factory=dict)  # name -> id
    jobs: dict = field(default_factory=dict)  # key -> job id
    runs: dict = field(default_factory=dict)  # key -> id of the job's queued run
    files: dict = field(default_factory=dict)  # key -> id of the run's output file
    content: dict = field(default_factory=dict)  # key -> bytes of that file
    deleted: int = 0  # id of the deleted job


def _add_run_with_file(job, files_dir) -> tuple[Run, RunFile, bytes]:
    run = Run(job_id=job.id, trigger=Trigger.HAND, status=RunStatus.QUEUED)
    db.session.add(run)
    db.session.flush()
    content = f"job,{job.name}\nrun,{run.id}\n".encode()
    relative = f"permissions-test/{uuid.uuid4().hex}/export.csv"
    path = Path(files_dir) / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    file = RunFile(run_id=run.id, job_id=job.id, name="export.csv", path=relative, size=len(content),
                   content_type="text/csv")
    db.session.add(file)
    db.session.commit()
    return run, file, content


@pytest.fixture
def world(app):
    with app.app_context():
        study_a = make_domain("Study A")
        site_a1 = make_domain("Site A1", parent=study_a)
        site_a2 = make_domain("Site A2", parent=study_a)
        study_b = make_domain("Study B")
        made = World(domains={d.name: d.id for d in (study_a, site_a1, site_a2, study_b)})
        domain_of = {"install": None, "a": study_a, "a1": site_a1, "b": study_b}
        for key in JOBS:
            job = make_job(NAMES[key], domain=domain_of[key])
            run, file, content = _add_run_with_file(job, app.config["FILES_DIR"])
            made.jobs[key], made.runs[key], made.files[key], made.content[key] = job.id, run.id, file.id, content
        made.deleted = make_job(DELETED_NAME, domain=study_a, deleted_at=utcnow()).id
        return made


@pytest.fixture
def user_for(app, world):
    """role key -> user name of a new user with that role (password "pw")."""

    def make(role_key):
        spec = ROLES[role_key]
        with app.app_context():
            from webapp.models import Domain

            by_name = {d.name: d for d in db.session.scalars(select(Domain))}
            user = make_user(spec["role"], domain=by_name.get(spec.get("domain")),
                             supervised=[by_name[n] for n in spec.get("supervised", ())],
                             username=f"{role_key}-user")
            return user.username

    return make


@pytest.fixture
def sign_in(login_as, user_for):
    """Sign the test client in as a new user of the role; returns the client and a CSRF token."""

    def signed(role_key):
        client = login_as(SimpleNamespace(username=user_for(role_key)))
        page = client.get("/jobs/")
        assert page.status_code == 200
        return client, csrf_from(page)

    return signed


def run_ids_of(app, job_id) -> set[int]:
    with app.app_context():
        return set(db.session.scalars(select(Run.id).where(Run.job_id == job_id)))


def run_status(app, run_id) -> str:
    with app.app_context():
        return db.session.scalar(select(Run.status).where(Run.id == run_id))


def listed_jobs(response) -> dict[int, str]:
    """The jobs a list page shows: id -> name, from the rows' links."""
    body = response.get_data(as_text=True)
    return {int(i): name for i, name in re.findall(r'<tr id="job-\d+".*?<a href="/jobs/(\d+)">([^<]+)</a>', body,
                                                     flags=re.S)}


# --- the jobs list ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_jobs_list_shows_exactly_the_jobs_the_user_may_see(world, sign_in, role):
    client, _ = sign_in(role)
    expected = {world.jobs[key]: NAMES[key] for key in VISIBLE[role]}

    page = client.get("/jobs/")
    assert page.status_code == 200
    assert listed_jobs(page) == expected
    body = page.get_data(as_text=True)
    for key in set(JOBS) - VISIBLE[role]:
        assert NAMES[key] not in body, f"{role} can read the name of {NAMES[key]!r} on the list"
    assert DELETED_NAME not in body

    # The table HTMX swaps in (sorting, paging, finding) applies the same rule.
    partial = client.get("/jobs/?sort=name&dir=desc", headers={"HX-Request": "true", "HX-Target": "jobs-table"})
    assert partial.status_code == 200 and "<html" not in partial.get_data(as_text=True)
    assert listed_jobs(partial) == expected

    # Finding by another domain's name finds nothing of that domain.
    found = listed_jobs(client.get("/jobs/?q=Study B"))
    assert found == ({world.jobs["b"]: NAMES["b"]} if "b" in VISIBLE[role] else {})
    assert listed_jobs(client.get("/jobs/?q=Retired")) == {}


# --- every page and action of a job, its runs and files --------------------------------------

def _assert_hidden(app, client, token, world, role, key):
    job_id, run_id, file_id = world.jobs[key], world.runs[key], world.files[key]
    who = f"{role} on {NAMES[key]}"

    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 404, who
    assert NAMES[key] not in response.get_data(as_text=True), f"{who}: the 404 page names the job"

    before = run_ids_of(app, job_id)
    assert client.post(f"/jobs/{job_id}/run", data={"csrf_token": token, "args": ""}).status_code == 404, who
    assert run_ids_of(app, job_id) == before, f"{who}: a run was queued"

    for url in (f"/runs/{run_id}", f"/runs/{run_id}/status"):
        response = client.get(url)
        assert response.status_code == 404, f"{who}: GET {url}"
        assert NAMES[key] not in response.get_data(as_text=True), f"{who}: GET {url} names the job"

    response = client.get(f"/runs/{run_id}/stream")
    try:
        assert response.status_code == 404, f"{who}: the live log stream"
        assert response.mimetype != "text/event-stream"
    finally:
        response.close()

    assert client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}).status_code == 404, who
    assert run_status(app, run_id) == RunStatus.QUEUED, f"{who}: the run was cancelled anyway"

    response = client.get(f"/runs/files/{file_id}")
    assert response.status_code == 404, f"{who}: file download"
    assert world.content[key] not in response.get_data()


def _assert_usable(app, client, token, world, role, key):
    job_id, run_id, file_id = world.jobs[key], world.runs[key], world.files[key]
    who = f"{role} on {NAMES[key]}"

    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, who
    assert NAMES[key] in response.get_data(as_text=True)

    before = run_ids_of(app, job_id)
    response = client.post(f"/jobs/{job_id}/run", data={"csrf_token": token, "args": ""})
    assert response.status_code == 302, who
    new = run_ids_of(app, job_id) - before
    assert len(new) == 1, f"{who}: expected one new run, got {new}"
    assert urlsplit(response.headers["Location"]).path == f"/runs/{new.pop()}"

    response = client.get(f"/runs/{run_id}")
    assert response.status_code == 200, who
    assert NAMES[key] in response.get_data(as_text=True)
    response = client.get(f"/runs/{run_id}/status")
    assert response.status_code == 200, who
    assert "Queued" in response.get_data(as_text=True)

    response = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302, who
    assert urlsplit(response.headers["Location"]).path == f"/runs/{run_id}"
    assert run_status(app, run_id) == RunStatus.CANCELLED

    # The run is final now, so its stream replays and ends instead of waiting on Redis.
    response = client.get(f"/runs/{run_id}/stream")
    try:
        assert response.status_code == 200, f"{who}: the live log stream"
        assert response.mimetype == "text/event-stream"
        body = response.get_data(as_text=True)
        assert "event: end" in body and "cancelled" in body
    finally:
        response.close()

    response = client.get(f"/runs/files/{file_id}")
    assert response.status_code == 200, f"{who}: file download"
    assert response.get_data() == world.content[key]
    assert "attachment" in response.headers["Content-Disposition"]
    assert "export.csv" in response.headers["Content-Disposition"]


@pytest.mark.parametrize("role", ROLES)
def test_hidden_jobs_answer_404_everywhere_and_visible_ones_work(app, world, sign_in, role):
    client, token = sign_in(role)
    for key in JOBS:
        if key in VISIBLE[role]:
            _assert_usable(app, client, token, world, role, key)
        else:
            _assert_hidden(app, client, token, world, role, key)

    # A deleted job is gone for everybody, superadmins included.
    assert client.get(f"/jobs/{world.deleted}").status_code == 404
    assert client.post(f"/jobs/{world.deleted}/run", data={"csrf_token": token}).status_code == 404
    assert run_ids_of(app, world.deleted) == set()

    # An id that does not exist answers like a hidden one.
    assert client.get("/jobs/987654").status_code == 404
    assert client.get("/runs/987654").status_code == 404
    assert client.get("/runs/files/987654").status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_run_selected_queues_runs_only_for_visible_jobs(app, world, sign_in, role):
    client, token = sign_in(role)
    ticked = [world.jobs[key] for key in JOBS] + [world.deleted, 987654]
    before = {key: run_ids_of(app, world.jobs[key]) for key in JOBS}

    response = client.post("/jobs/run", data={"csrf_token": token, "job_id": [str(i) for i in ticked]})
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/jobs/"

    queued = {key for key in JOBS if run_ids_of(app, world.jobs[key]) != before[key]}
    assert queued == VISIBLE[role]
    for key in queued:
        assert len(run_ids_of(app, world.jobs[key]) - before[key]) == 1
    assert run_ids_of(app, world.deleted) == set()
    page = client.get("/jobs/").get_data(as_text=True)
    count = len(VISIBLE[role])
    assert f"Queued {count} run{'' if count == 1 else 's'}:" in page
    # The others (another domain's, deleted, never there) are told apart from none: they are gone.
    assert f"{len(ticked) - count} of the ticked jobs no longer exist: nothing was done to them." in page


def test_run_selected_with_only_other_domains_jobs_queues_nothing(app, world, sign_in):
    client, token = sign_in("admin_b")
    response = client.post("/jobs/run", data={"csrf_token": token,
                                              "job_id": [str(world.jobs[k]) for k in ("install", "a", "a1")]})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count(Run.id))) == len(JOBS)  # only the world's own runs
    # Jobs of another domain answer as if they did not exist (not "tick at least one job").
    page = client.get("/jobs/").get_data(as_text=True)
    assert "3 of the ticked jobs no longer exist: nothing was done to them." in page
    assert "Tick at least one job" not in page


# --- signed out ------------------------------------------------------------------------------

def test_every_page_needs_sign_in(app, client, world):
    job_id, run_id, file_id = world.jobs["a"], world.runs["a"], world.files["a"]
    for url in ("/jobs/", f"/jobs/{job_id}", f"/runs/{run_id}", f"/runs/{run_id}/status",
                f"/runs/{run_id}/stream", f"/runs/files/{file_id}"):
        response = client.get(url)
        assert response.status_code == 302, url
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login", url
        assert parse_qs(location.query).get("next") == [url], url
        assert world.content["a"] not in response.get_data()

    token = csrf_from(client.get("/login"))  # a valid token, so only the missing sign-in refuses
    response = client.post(f"/jobs/{job_id}/run", data={"csrf_token": token})
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    response = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    assert run_ids_of(app, job_id) == {run_id}
    assert run_status(app, run_id) == RunStatus.QUEUED


# --- the permission functions themselves -----------------------------------------------------

def _user(username) -> User:
    return db.session.scalar(select(User).where(User.username == username))


@pytest.mark.parametrize("role", ROLES)
def test_permission_functions_answer_for_each_role(ctx, world, user_for, role):
    user = _user(user_for(role))
    visible_ids = {world.jobs[key] for key in VISIBLE[role]}

    jobs = db.session.scalars(permissions.jobs_query(user)).all()
    assert {job.id for job in jobs} == visible_ids
    assert {job.name for job in jobs} == {NAMES[key] for key in VISIBLE[role]}
    runs = db.session.scalars(permissions.runs_query(user)).all()
    assert {run.id for run in runs} == {world.runs[key] for key in VISIBLE[role]}
    files = db.session.scalars(permissions.files_query(user)).all()
    assert {file.id for file in files} == {world.files[key] for key in VISIBLE[role]}

    for key in JOBS:
        job_id, run_id, file_id = world.jobs[key], world.runs[key], world.files[key]
        if key in VISIBLE[role]:
            assert permissions.get_job_or_404(user, job_id).id == job_id
            assert permissions.get_run_or_404(user, run_id).id == run_id
            assert permissions.get_run_or_404(user, run_id, job_id=job_id).id == run_id
            assert permissions.get_file_or_404(user, file_id).id == file_id
        else:
            with pytest.raises(NotFound):
                permissions.get_job_or_404(user, job_id)
            with pytest.raises(NotFound):
                permissions.get_run_or_404(user, run_id)
            with pytest.raises(NotFound):
                permissions.get_file_or_404(user, file_id)
    with pytest.raises(NotFound):  # deleted: nobody, superadmin included
        permissions.get_job_or_404(user, world.deleted)
    with pytest.raises(NotFound):  # a visible run asked for under another job
        permissions.get_run_or_404(user, world.runs[next(iter(VISIBLE[role]))], job_id=world.deleted)


def test_nested_domains_are_seen_from_every_level_above_and_never_from_beside_or_below(ctx, world, user_for):
    from webapp.models import Domain

    site_a1 = db.session.get(Domain, world.domains["Site A1"])
    deep = make_domain("Site A1 ward 3", parent=site_a1)
    deeper = make_domain("Site A1 ward 3 bed 7", parent=deep)
    deep_job = make_job("Deep job", domain=deeper)
    users = {role: _user(user_for(role)) for role in ROLES}
    users["admin_a2"] = make_user(Role.DOMAIN_ADMIN, domain=db.session.get(Domain, world.domains["Site A2"]))
    sees = {"superadmin": True, "sysadmin": True, "admin_a": True, "admin_a1": True,
            "admin_b": False, "admin_a2": False}

    for role, user in users.items():
        listed = deep_job.id in {job.id for job in db.session.scalars(permissions.jobs_query(user))}
        assert listed is sees[role], role
        if sees[role]:
            assert permissions.get_job_or_404(user, deep_job.id).id == deep_job.id
        else:
            with pytest.raises(NotFound):
                permissions.get_job_or_404(user, deep_job.id)

    # Nesting goes down only: the Site A1 administrator does not see its parent's job.
    with pytest.raises(NotFound):
        permissions.get_job_or_404(users["admin_a1"], world.jobs["a"])
    assert {j.name for j in db.session.scalars(permissions.jobs_query(users["admin_a2"]))} == set()


def test_users_with_nothing_to_supervise_see_no_domain_jobs(ctx, world):
    lone_sysadmin = make_user(Role.SYSADMIN)
    homeless_admin = make_user(Role.DOMAIN_ADMIN)  # a domain admin whose domain is missing
    assert {j.name for j in db.session.scalars(permissions.jobs_query(lone_sysadmin))} == {NAMES["install"]}
    assert db.session.scalars(permissions.jobs_query(homeless_admin)).all() == []
    assert db.session.scalars(permissions.runs_query(homeless_admin)).all() == []
    assert db.session.scalars(permissions.files_query(homeless_admin)).all() == []
    with pytest.raises(NotFound):
        permissions.get_job_or_404(homeless_admin, world.jobs["install"])


# --- what a user may do ----------------------------------------------------------------------

@pytest.mark.parametrize("role, may", [(Role.SUPERADMIN, True), (Role.SYSADMIN, True), (Role.DOMAIN_ADMIN, False),
                                       (Role.SYSTEM, False)])
def test_only_superadmins_and_system_administrators_manage_queues(ctx, role, may):
    assert permissions.can_manage_queues(make_user(role)) is may


def test_support_is_for_the_roles_the_setting_names_superadmins_by_default(ctx):
    users = {role: make_user(role) for role in (Role.SUPERADMIN, Role.SYSADMIN, Role.DOMAIN_ADMIN, Role.SYSTEM)}

    def allowed():
        return {role for role, user in users.items() if permissions.can_use_support(user)}

    assert allowed() == {Role.SUPERADMIN}
    setting = Setting(key="support_roles", value=["superadmin", "sysadmin"])
    db.session.add(setting)
    db.session.commit()
    assert allowed() == {Role.SUPERADMIN, Role.SYSADMIN}
    setting.value = []  # an administrator may close support to everyone
    db.session.commit()
    assert allowed() == set()
    for garbled in ("sysadmin", {"sysadmin": True}, [1, 2], None):  # not a list of names: the default
        setting.value = garbled
        db.session.commit()
        assert allowed() == {Role.SUPERADMIN}, garbled


# --- job types that only some roles see ------------------------------------------------------

HIDDEN_KEY = "tests.superadmins_only"
HIDDEN_NAME = "Support script job"


@dataclass(frozen=True)
class RoleBoundType(JobType):
    """A job type that names the roles who see it."""

    visible_to: frozenset = frozenset()


@pytest.fixture
def hidden_type(app):
    """A job type only superadmins see, installed for the test, with a job in Study A that has
    a queued run and an output file."""
    registry.register(RoleBoundType(key=HIDDEN_KEY, label="Support script", run=lambda ctx: None,
                                    user_creatable=True, visible_to=frozenset({Role.SUPERADMIN.value})))
    try:
        yield
    finally:
        registry._REGISTRY.pop(HIDDEN_KEY, None)


@pytest.fixture
def hidden_job(app, world, hidden_type):
    with app.app_context():
        from webapp.models import Domain

        job = make_job(HIDDEN_NAME, domain=db.session.get(Domain, world.domains["Study A"]), job_type=HIDDEN_KEY,
                       params={})
        run, file, _ = _add_run_with_file(job, app.config["FILES_DIR"])
        return SimpleNamespace(job=job.id, run=run.id, file=file.id)


@pytest.mark.parametrize("role", ROLES)
def test_a_job_type_some_roles_may_not_see_hides_its_jobs_runs_and_files(ctx, hidden_job, user_for, role):
    user = _user(user_for(role))
    sees = role == "superadmin"  # Study A's people see the domain, but not this type
    assert (HIDDEN_KEY in permissions.hidden_job_types(user)) is not sees
    assert ("support.script" in permissions.hidden_job_types(user)) is not sees  # by the support_roles setting

    assert (hidden_job.job in {job.id for job in db.session.scalars(permissions.jobs_query(user))}) is sees
    assert (hidden_job.run in {run.id for run in db.session.scalars(permissions.runs_query(user))}) is sees
    assert (hidden_job.file in {file.id for file in db.session.scalars(permissions.files_query(user))}) is sees
    if sees:
        assert permissions.get_job_or_404(user, hidden_job.job).name == HIDDEN_NAME
        assert permissions.get_run_or_404(user, hidden_job.run).id == hidden_job.run
        assert permissions.get_file_or_404(user, hidden_job.file).id == hidden_job.file
    else:
        for lookup, object_id in ((permissions.get_job_or_404, hidden_job.job),
                                  (permissions.get_run_or_404, hidden_job.run),
                                  (permissions.get_file_or_404, hidden_job.file)):
            with pytest.raises(NotFound):
                lookup(user, object_id)
    # The other jobs of the domain stay as they were.
    assert {job.name for job in db.session.scalars(permissions.jobs_query(user))} - {HIDDEN_NAME} == \
        {NAMES[key] for key in VISIBLE[role]}
    assert (HIDDEN_KEY in {jt.key for jt in permissions.job_types_for(user)}) is sees


@pytest.mark.parametrize("role", ["superadmin", "sysadmin", "admin_a"])
def test_pages_of_a_hidden_job_type_are_404_and_its_type_is_not_offered(app, hidden_job, sign_in, role):
    client, token = sign_in(role)
    sees = role == "superadmin"
    assert (HIDDEN_NAME in client.get("/jobs/").get_data(as_text=True)) is sees
    assert (HIDDEN_NAME in client.get("/jobs/?q=Support").get_data(as_text=True)) is sees
    for url in (f"/jobs/{hidden_job.job}", f"/jobs/{hidden_job.job}/edit", f"/runs/{hidden_job.run}",
                f"/runs/files/{hidden_job.file}"):
        assert client.get(url).status_code == (200 if sees else 404), url
    before = run_ids_of(app, hidden_job.job)
    response = client.post(f"/jobs/{hidden_job.job}/run", data={"csrf_token": token, "args": ""})
    assert response.status_code == (302 if sees else 404)
    assert (run_ids_of(app, hidden_job.job) != before) is sees
    # The new-job form offers the type only to those who see it, and a forged choice is refused.
    new_form = client.get("/jobs/new").get_data(as_text=True)
    assert (f'value="{HIDDEN_KEY}"' in new_form) is sees
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == f"{role}-user"))
        forged = JobInput(name="Forged", job_type=HIDDEN_KEY, scope="domain", domain_id=str(hidden_job_domain(app)),
                          plan={"kind": "disabled"})
        if sees:
            assert editing.check(user, forged)["job_type"] == HIDDEN_KEY
        else:
            with pytest.raises(editing.InvalidJob) as refused:
                editing.check(user, forged)
            assert refused.value.errors["job_type"] == "Choose one of the listed job types."


def hidden_job_domain(app) -> int:
    with app.app_context():
        return db.session.scalar(select(Job.domain_id).where(Job.name == HIDDEN_NAME))


# --- the audit trail -------------------------------------------------------------------------

def test_audit_records_each_user_may_read(ctx, world, hidden_job, user_for):
    users = {role: _user(user_for(role)) for role in ROLES}
    job = {key: db.session.get(Job, world.jobs[key]) for key in JOBS}
    hidden = db.session.get(Job, hidden_job.job)
    events = {
        "install": record("edit", "job", job["install"], actor=None),
        "a": record("edit", "job", job["a"], actor=users["superadmin"]),
        "a1": record("remove", "job", job["a1"], actor=None),
        "b": record("edit", "job", job["b"], actor=None),
        "run_a": record("cancel", "run", db.session.get(Run, world.runs["a"]), actor=None,
                        domain_id=job["a"].domain_id),
        "hidden": record("edit", "job", hidden, actor=users["superadmin"]),
        "hidden_run": record("cancel", "run", db.session.get(Run, hidden_job.run), actor=None,
                             domain_id=hidden.domain_id),
        "hidden_run_now": record("run_now", "job", job["a"], actor=None, run=db.session.get(Run, hidden_job.run)),
        "login_b": record("login", "user", users["admin_b"], actor=users["admin_b"]),
        "login_a1": record("login", "user", users["admin_a1"], actor=users["admin_a1"]),
        "password_a": record("password", "user", users["admin_a"], actor=None),
        "failed_sign_in": record("login_failed", "user", object_name="nobody", actor=None),
    }
    db.session.commit()
    readable = {
        "superadmin": set(events),
        "sysadmin": {"install", "a", "a1", "run_a"},
        "admin_a": {"a", "a1", "run_a", "password_a"},
        "admin_b": {"b", "login_b"},
        "admin_a1": {"a1", "login_a1"},
    }
    names = {event.id: name for name, event in events.items()}
    for role, user in users.items():
        got = {names[event.id] for event in db.session.scalars(permissions.audit_query(user)) if event.id in names}
        assert got == readable[role], role
