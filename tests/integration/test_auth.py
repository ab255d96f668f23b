"""Signing in and out, and the command line that makes users and API tokens.

Requests are made with no application context held by the test (each request gets its own,
as in real use); the test's own database work happens in short `with app.app_context()` blocks.
"""
import hashlib
import re
import statistics
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import ApiToken, AuditEvent, Role, User

WRONG = "Unknown user name or wrong password."


@pytest.fixture
def real_hashing():
    """Asked for by the tests about how passwords are stored: they keep the app's real hash."""


@pytest.fixture(autouse=True)
def _quick_password_hashes(request, monkeypatch):
    """Elsewhere a cheap hash keeps the many sign-ins fast (checking reads the method from the
    stored hash, so signing in works the same)."""
    if "real_hashing" not in request.fixturenames:
        monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                            lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


def new_user(app, role=Role.SUPERADMIN, **kwargs) -> str:
    with app.app_context():
        return make_user(role, **kwargs).username


def post_login(client, username, password, url="/login"):
    token = csrf_from(client.get(url))
    return client.post(url, data={"username": username, "password": password, "csrf_token": token})


def signed_in_as(client) -> str | None:
    """Who the site thinks the client is: None when the jobs list sends it to sign in."""
    response = client.get("/jobs/")
    if response.status_code == 302:
        assert urlsplit(response.headers["Location"]).path == "/login"
        return None
    assert response.status_code == 200
    match = re.search(r'<span class="who">([^<]+) <small>', response.get_data(as_text=True))
    assert match, "signed in, but the page does not say who"
    return match.group(1)


def login_events(app, username=None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == "login")
        if username:
            query = query.where(AuditEvent.actor_name == username)
        events = db.session.scalars(query).all()
        db.session.expunge_all()
        return events


def lands_on_site(location: str) -> bool:
    """Whether a browser following this Location stays on the site (http://localhost)."""
    # Browsers drop tabs and newlines, trim spaces and read a backslash as a slash.
    cleaned = re.sub(r"[\t\n\r]", "", location).strip(" \x00").replace("\\", "/")
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        return parts.scheme in ("http", "https") and parts.netloc == "localhost"
    return cleaned.startswith("/") and not cleaned.startswith("//")


# --- the sign-in form ------------------------------------------------------------------------

def test_sign_in_page_renders_with_a_csrf_token(client):
    page = client.get("/login")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert len(csrf_from(page)) > 20
    assert 'name="username"' in body and 'type="password"' in body
    assert signed_in_as(client) is None


def test_good_credentials_open_the_dashboard(app, client):
    name = new_user(app)
    response = post_login(client, name, "pw")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/dashboard/"
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and "<h1>Dashboard</h1>" in page.get_data(as_text=True)
    assert signed_in_as(client) == name
    # Signed in, the sign-in page sends you on to the dashboard, or to the page a link asked for.
    assert urlsplit(client.get("/login").headers["Location"]).path == "/dashboard/"
    assert client.get("/login?next=/jobs/%3Fq%3Dx").headers["Location"] == "/jobs/?q=x"
    assert urlsplit(client.get("/login?next=https://evil.example/").headers["Location"]).path == "/dashboard/"


@pytest.mark.parametrize("case", ["wrong password", "unknown user"])
def test_bad_credentials_are_refused_next_to_the_password_field(app, client, case):
    name = new_user(app)
    username, password = (name, "not-the-password") if case == "wrong password" else ("nobody", "pw")
    response = post_login(client, username, password)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    # The message is the password field's error, right after the field; the same words whether the
    # user exists or not, so the form does not tell which user names exist.
    assert f'<p class="field-error" id="password-error">{WRONG}</p>' in body
    password_input = re.search(r'<input[^>]*id="password"[^>]*>', body).group(0)
    assert 'aria-invalid="true"' in password_input
    assert body.index(password_input) < body.index(WRONG)
    assert body.count(WRONG) == 1
    assert csrf_from(response)  # the form can be sent again
    assert signed_in_as(client) is None
    assert login_events(app) == []


def test_failed_sign_ins_are_audited_without_the_password(app, client):
    name = new_user(app)
    post_login(client, name, "wrong-secret-1")
    post_login(client, "no-such-user", "wrong-secret-2")
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "login_failed")
                                    .order_by(AuditEvent.id)).all()
        user_id = db.session.scalar(select(User.id).where(User.username == name))
        assert [(e.object_name, e.object_id, e.actor_id) for e in events] == [
            (name, user_id, None), ("no-such-user", None, None)]
        for event in events:
            assert "wrong-secret" not in repr([getattr(event, c.key) for c in AuditEvent.__table__.columns])


def failed_sign_in_seconds(client, username) -> float:
    token = csrf_from(client.get("/login"))
    started = time.perf_counter()
    response = client.post("/login", data={"username": username, "password": "not-it", "csrf_token": token})
    elapsed = time.perf_counter() - started
    assert response.status_code == 400
    return elapsed


def test_sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(app, client, real_hashing):
    """Timing must not tell which user names exist (nor which are inactive or system accounts)."""
    attempts = 3
    with app.app_context():
        names = {"wrong password": [make_user().username for _ in range(attempts)],
                 "inactive": [make_user().username for _ in range(attempts)],
                 "system": [make_user(Role.SYSTEM).username for _ in range(attempts)],
                 "unknown": [f"nobody-{i}" for i in range(attempts)]}
        for user in db.session.scalars(select(User).where(User.username.in_(names["inactive"]))):
            user.active = False
        db.session.commit()
    # Interleaved, so that a busy moment of the machine hits every path alike.
    times = {path: [] for path in names}
    for i in range(attempts):
        for path, usernames in names.items():
            times[path].append(failed_sign_in_seconds(client, usernames[i]))
    wrong = statistics.median(times.pop("wrong password"))
    for path, seconds in times.items():
        assert statistics.median(seconds) >= 0.5 * wrong, (path, seconds, wrong)


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_post_without_a_valid_csrf_token_is_refused(app, client, token):
    name = new_user(app)
    client.get("/login")
    data = {"username": name, "password": "pw"}
    if token:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert signed_in_as(client) is None
    assert login_events(app) == []


def assert_sign_in_refused(app, client, username):
    """The right password, yet the same answer as a wrong one, nobody signed in, nothing audited."""
    response = post_login(client, username, "pw")
    assert response.status_code == 400
    assert WRONG in response.get_data(as_text=True)
    assert signed_in_as(client) is None
    assert login_events(app) == []


def test_a_system_account_cannot_sign_in_even_with_a_password(app, client):
    with app.app_context():
        robot = make_user(Role.SYSTEM, username="robot")
        robot.set_password("pw")  # system accounts get none; suppose one got one anyway
        db.session.commit()
    assert_sign_in_refused(app, client, "robot")
    with app.app_context():
        assert db.session.scalar(select(User.last_login_at).where(User.username == "robot")) is None


def test_an_inactive_user_cannot_sign_in(app, client):
    with app.app_context():
        user = make_user(username="gone")
        user.active = False
        db.session.commit()
    assert_sign_in_refused(app, client, "gone")


def test_a_deactivated_user_is_signed_out_on_the_next_request(app, client):
    name = new_user(app)
    assert post_login(client, name, "pw").status_code == 302
    assert signed_in_as(client) == name
    with app.app_context():
        db.session.scalar(select(User).where(User.username == name)).active = False
        db.session.commit()
    assert signed_in_as(client) is None


@pytest.mark.parametrize("target", [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "/\t/evil.example/",
    "https:evil.example",
    "http://localhost.evil.example/",
    "javascript:alert(1)",
])
def test_sign_in_does_not_follow_next_off_the_site(app, client, target):
    name = new_user(app)
    response = post_login(client, name, "pw", url="/login?" + urlencode({"next": target}))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert lands_on_site(location), f"next={target!r} sent the browser to {location!r}"
    assert signed_in_as(client) == name


CONTROL_NEXT = ["/jobs\r\nSet-Cookie: x=1", "/jobs/\nLocation: https://evil.example/", "/jobs/\x00", "/jobs/\x7f",
                "/jobs/\t"]


@pytest.mark.parametrize("target", CONTROL_NEXT)
def test_sign_in_never_fails_on_a_next_holding_control_characters(app, client, target):
    name = new_user(app)
    token = csrf_from(client.get("/login"))
    response = client.post("/login?" + urlencode({"next": target}),
                           data={"username": name, "password": "pw", "csrf_token": token})
    # Refused as malformed before the form is read, or signed in and sent to the dashboard;
    # never a 500 and never a header built from the address.
    assert response.status_code in (302, 400), response.status_code
    if response.status_code == 302:
        assert response.headers["Location"] == "/dashboard/"
        assert signed_in_as(client) == name
    assert "x=1" not in response.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("target, location", [(target, "/dashboard/") for target in CONTROL_NEXT + ["jobs/", "", None]] + [
    ("/logout", "/dashboard/"),  # an expired session's Sign out lands here; a GET there would be a 405
    ("/jobs/?q=a b", "/jobs/?q=a%20b"),  # what the find box sends, kept but written as a URL
    ("/jobs/?q=\u0448", "/jobs/?q=%D1%88"),
])
def test_next_is_only_ever_a_plain_path_on_the_site(app, target, location):
    from webapp.auth.routes import _safe_next

    with app.test_request_context():
        assert _safe_next(target) == location


@pytest.mark.parametrize("target", ["/jobs/", "/jobs/?sort=name&dir=desc"])
def test_sign_in_follows_next_on_the_site(app, client, target):
    name = new_user(app)
    response = post_login(client, name, "pw", url="/login?" + urlencode({"next": target}))
    assert response.status_code == 302
    assert response.headers["Location"] == target


def test_a_signed_out_visitor_lands_on_the_page_asked_for_after_signing_in(app, client):
    name = new_user(app)
    with app.app_context():
        job_id = make_job("Nightly export").id
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 302
    login_url = response.headers["Location"]
    assert urlsplit(login_url).path == "/login"
    assert parse_qs(urlsplit(login_url).query)["next"] == [f"/jobs/{job_id}"]
    assert "Please sign in to continue." in client.get(login_url).get_data(as_text=True)

    response = post_login(client, name, "pw", url=login_url)
    assert response.status_code == 302 and response.headers["Location"] == f"/jobs/{job_id}"
    assert "Nightly export" in client.get(f"/jobs/{job_id}").get_data(as_text=True)


# --- signing out -----------------------------------------------------------------------------

def test_sign_out_is_a_post_with_csrf_and_ends_the_session(app, client):
    name = new_user(app)
    assert post_login(client, name, "pw").status_code == 302
    page = client.get("/jobs/")
    token = csrf_from(page)
    assert 'action="/logout"' in page.get_data(as_text=True)  # the Sign out button posts

    assert client.get("/logout").status_code == 405
    assert signed_in_as(client) == name
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert signed_in_as(client) == name

    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert "You are signed out." in client.get(response.headers["Location"]).get_data(as_text=True)
    response = client.get("/jobs/")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"


# --- what is stored --------------------------------------------------------------------------

def test_passwords_are_stored_hashed_and_salted(app, client, real_hashing):
    with app.app_context():
        one = make_user(username="one", password="correct horse battery")
        two = make_user(username="two", password="correct horse battery")
        hashes = one.password_hash, two.password_hash
    for stored in hashes:
        assert stored and "correct horse battery" not in stored
        assert stored.split(":")[0] in ("scrypt", "pbkdf2")
    assert hashes[0] != hashes[1]  # salted
    assert post_login(client, "one", "correct horse battery").status_code == 302


def test_sign_in_is_audited(app, client):
    name = new_user(app)
    assert post_login(client, name, "pw").status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "login")).all()
        assert len(events) == 1
        event = events[0]
        assert (event.actor_id, event.actor_name) == (user.id, name)
        assert (event.object_type, event.object_id, event.object_name) == ("user", user.id, name)
        assert user.last_login_at is not None


# --- the command line ------------------------------------------------------------------------

def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_creates_a_user_who_can_sign_in_with_a_hashed_password(app, client, real_hashing):
    result = cli(app, "users", "create", "alice", "--role", "superadmin", "--password", "s3cret-pass")
    assert result.exit_code == 0, result.output
    assert "Created superadmin alice." in result.output
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        assert user.role == Role.SUPERADMIN
        assert user.password_hash and "s3cret-pass" not in user.password_hash
        assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "create", AuditEvent.object_type == "user", AuditEvent.object_id == user.id)) == 1
    assert post_login(client, "alice", "s3cret-pass").status_code == 302
    assert signed_in_as(client) == "alice"


def test_cli_token_works_as_a_bearer_token_and_only_its_hash_is_stored(app, client):
    with app.app_context():
        study_a, study_b = make_domain("Study A"), make_domain("Study B")
        make_job("Study A job", domain=study_a)
        make_job("Study B job", domain=study_b)
        make_job("Installation job")
    result = cli(app, "users", "create", "ann", "--role", "domain_admin", "--domain", "Study A",
                 "--password", "pw")
    assert result.exit_code == 0, result.output

    result = cli(app, "users", "token", "ann")
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token and "\n" not in token

    assert client.get("/api/scheduled-jobs").status_code == 401
    assert client.get("/api/scheduled-jobs", headers={"Authorization": "Bearer ft_wrong"}).status_code == 401
    response = client.get("/api/scheduled-jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [job["name"] for job in response.get_json()] == ["Study A job"]  # a domain admin's view

    with app.app_context():
        rows = db.session.scalars(select(ApiToken)).all()
        assert len(rows) == 1
        row = rows[0]
        assert row.user.username == "ann"
        assert row.token_hash != token
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert all(token not in str(getattr(row, c.key)) for c in ApiToken.__table__.columns)
        assert row.last_used_at is not None


def test_cli_refuses_a_duplicate_user(app):
    assert cli(app, "users", "create", "bob", "--role", "sysadmin", "--password", "pw").exit_code == 0
    result = cli(app, "users", "create", "bob", "--role", "superadmin", "--password", "other")
    assert result.exit_code != 0
    assert "User 'bob' already exists." in result.output
    with app.app_context():
        users = db.session.scalars(select(User).where(User.username == "bob")).all()
        assert [u.role for u in users] == [Role.SYSADMIN]


def test_cli_refuses_a_domain_admin_without_a_domain(app):
    result = cli(app, "users", "create", "dora", "--role", "domain_admin", "--password", "pw")
    assert result.exit_code != 0
    assert "A domain administrator needs --domain." in result.output
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "dora")) is None


def test_cli_refuses_a_token_for_an_unknown_user(app):
    result = cli(app, "users", "token", "ghost")
    assert result.exit_code != 0
    assert "No user 'ghost'." in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count(ApiToken.id))) == 0


def test_account_changes_are_audited_under_the_actor_named_not_whoever_is_signed_in(app):
    from flask_login import login_user

    from webapp import accounts
    from webapp.models.audit import record

    with app.app_context():
        admin = make_user(username="root-admin")
        leaver, mover = make_user(Role.DOMAIN_ADMIN, username="leaver"), make_user(Role.DOMAIN_ADMIN, username="mover")
        with app.test_request_context():
            login_user(admin)  # somebody is signed in while the system changes an account
            accounts.deactivate(leaver)
            accounts.set_password(mover, "new-pw", actor=admin)
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action.in_(("deactivate", "password")))
                                    .order_by(AuditEvent.id)).all()
        assert [(e.action, e.object_name, e.actor_name, e.actor_id) for e in events] == [
            ("deactivate", "leaver", "system", None), ("password", "mover", "root-admin", admin.id)]
        with pytest.raises(TypeError):  # an audit record always says who acted
            record("edit", "job")
