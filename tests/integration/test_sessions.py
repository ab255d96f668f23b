"""Server-side sessions: the cookie holds a random token whose row on the server decides whether
the browser is signed in, so signing out, an idle spell, a password change and a deactivation end
the session whatever cookie a browser (or whoever copied it) kept."""
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask_login.utils import encode_cookie
from sqlalchemy import select, update
from werkzeug.security import generate_password_hash

from tests.factories import csrf_from, make_job, make_user
from webapp.extensions import db
from webapp.models import Job, JobState, User, UserSession
from webapp.models.accounts import hash_token
from webapp.models.types import utcnow


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


def new_user(app) -> str:
    with app.app_context():
        return make_user().username


def sign_in(client, username, password="pw"):
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": csrf_from(client.get("/login"))})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def sent_to_sign_in(response) -> bool:
    return response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def browser_with(app, cookie):
    """Another browser, holding a copy of a session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def sessions_of(app, username) -> list[UserSession]:
    with app.app_context():
        rows = db.session.scalars(select(UserSession).join(UserSession.user)
                                  .where(User.username == username).order_by(UserSession.id)).all()
        db.session.expunge_all()
        return rows


def cli(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_a_cookie_kept_from_before_sign_out_opens_nothing_and_removes_nothing(app, client):
    name = new_user(app)
    with app.app_context():
        job_id = make_job("Nightly export").id
    sign_in(client, name)
    old_token = csrf_from(client.get(f"/jobs/{job_id}"))
    old_cookie = session_cookie(client)

    logout = client.post("/logout", data={"csrf_token": old_token})
    assert sent_to_sign_in(logout)

    replay = browser_with(app, old_cookie)
    assert sent_to_sign_in(replay.get("/jobs/"))
    assert sent_to_sign_in(replay.get(f"/jobs/{job_id}"))
    response = replay.post(f"/jobs/{job_id}/remove", data={"csrf_token": old_token})
    assert response.status_code in (302, 400) and "removed" not in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Job, job_id).state == JobState.ACTIVE
    assert [row.ended_at is not None for row in sessions_of(app, name)] == [True]


def test_the_cookie_holds_a_token_and_the_server_only_its_hash(app, client):
    name = new_user(app)
    sign_in(client, name)
    with client.session_transaction() as cookie_session:
        token = cookie_session["session_token"]
    assert len(token) >= 40
    [row] = sessions_of(app, name)
    assert row.token_hash == hash_token(token) and row.ended_at is None
    assert row.address == "127.0.0.1"


def test_signing_in_again_gives_a_new_session_and_csrf_token(app, client):
    name = new_user(app)
    login_page = client.get("/login")
    before = csrf_from(login_page)
    with client.session_transaction() as cookie_session:
        raw_before = cookie_session["csrf_token"]
    client.post("/login", data={"username": name, "password": "pw", "csrf_token": before})
    with client.session_transaction() as cookie_session:
        assert cookie_session.get("csrf_token") != raw_before
    # A token taken from a page before signing in does not carry over into the signed-in session.
    with app.app_context():
        job_id = make_job().id
    response = client.post(f"/jobs/{job_id}/remove", data={"csrf_token": before})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.get(Job, job_id).state == JobState.ACTIVE


def test_an_idle_session_ends(app, client):
    name = new_user(app)
    sign_in(client, name)
    assert client.get("/jobs/").status_code == 200
    idle = app.config["SESSION_IDLE_MINUTES"]
    with app.app_context():
        db.session.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(minutes=idle + 1)))
        db.session.commit()
    assert sent_to_sign_in(client.get("/jobs/"))


def test_use_keeps_a_session_alive_with_at_most_one_write_a_minute(app, client):
    name = new_user(app)
    sign_in(client, name)
    [row] = sessions_of(app, name)
    for _ in range(3):
        assert client.get("/jobs/").status_code == 200
    assert sessions_of(app, name)[0].last_seen_at == row.last_seen_at  # page views are not writes

    idle = app.config["SESSION_IDLE_MINUTES"]
    almost = utcnow() - timedelta(minutes=idle - 1)
    with app.app_context():
        db.session.execute(update(UserSession).values(last_seen_at=almost))
        db.session.commit()
    assert client.get("/jobs/").status_code == 200
    assert sessions_of(app, name)[0].last_seen_at > almost + timedelta(minutes=1)


def test_a_password_change_ends_every_session_of_the_user(app):
    name = new_user(app)
    other_name = new_user(app)
    first, second, bystander = app.test_client(), app.test_client(), app.test_client()
    sign_in(first, name)
    sign_in(second, name)
    sign_in(bystander, other_name)

    result = cli(app, "users", "password", name, input="new-secret\nnew-secret\n")
    assert result.exit_code == 0, result.output
    assert f"Password of {name} changed" in result.output

    assert sent_to_sign_in(first.get("/jobs/"))
    assert sent_to_sign_in(second.get("/jobs/"))
    assert bystander.get("/jobs/").status_code == 200
    fresh = app.test_client()
    assert fresh.post("/login", data={"username": name, "password": "pw",
                                      "csrf_token": csrf_from(fresh.get("/login"))}).status_code == 400
    sign_in(fresh, name, "new-secret")
    assert fresh.get("/jobs/").status_code == 200


def test_deactivation_ends_every_session_for_good(app):
    name = new_user(app)
    browser = sign_in(app.test_client(), name)
    assert browser.get("/jobs/").status_code == 200
    result = cli(app, "users", "deactivate", name)
    assert result.exit_code == 0, result.output
    assert f"{name} is deactivated" in result.output
    assert sent_to_sign_in(browser.get("/jobs/"))
    assert all(row.ended_at is not None for row in sessions_of(app, name))

    # Switched back on later, the user signs in again; the old cookie stays dead.
    with app.app_context():
        db.session.scalar(select(User).where(User.username == name)).active = True
        db.session.commit()
    assert sent_to_sign_in(browser.get("/jobs/"))


def test_cli_refuses_unknown_users(app):
    for command in (["users", "password", "ghost", "--password", "x"], ["users", "deactivate", "ghost"]):
        result = cli(app, *command)
        assert result.exit_code != 0 and "No user 'ghost'." in result.output


def test_a_remember_me_cookie_signs_nobody_in(app, client):
    with app.app_context():
        user = make_user()
        with app.test_request_context():
            forged = encode_cookie(str(user.id))  # what Flask-Login would accept as "remember me"
    client.set_cookie("remember_token", forged)
    assert sent_to_sign_in(client.get("/jobs/"))


def test_forms_work_after_signing_in_and_out_within_one_app_context(ctx, client):
    """Flask-WTF caches a request's CSRF token in g; emptying the session must drop that too
    (tests that hold an app context across requests share one g)."""
    name = make_user().username
    sign_in(client, name)
    job_id = make_job().id
    response = client.post(f"/jobs/{job_id}/remove", data={"csrf_token": csrf_from(client.get(f"/jobs/{job_id}"))})
    assert response.status_code == 302
    assert client.post("/logout", data={"csrf_token": csrf_from(client.get("/jobs/"))}).status_code == 302
    sign_in(client, name)
    assert client.post(f"/jobs/{job_id}/restore",
                       data={"csrf_token": csrf_from(client.get(f"/jobs/{job_id}"))}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Job, job_id).state == JobState.ACTIVE
