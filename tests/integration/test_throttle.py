"""Throttling of guesses: failed sign-ins per account and per address, bad API tokens per address.
Only failures count, the lock lasts minutes, and a Redis outage never breaks signing in."""
import re
from itertools import count
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from werkzeug.security import generate_password_hash

from tests.conftest import wait_for
from tests.factories import csrf_from, make_user
from webapp.extensions import db
from webapp.models import ApiToken, Role

WRONG = "Unknown user name or wrong password."
ACCOUNT_LOCKED = re.compile(r"Too many failed sign-ins for this account; try again in (\d+) minutes?\.")
ADDRESS_LOCKED = re.compile(r"Too many failed sign-ins from your address; try again in (\d+) minutes?\.")


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


def new_user(app, role=Role.SUPERADMIN) -> str:
    with app.app_context():
        return make_user(role).username


def post_login(client, username, password):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_from(client.get("/login"))})


def signed_in(response) -> bool:
    return response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/dashboard/"


def password_error(response) -> str:
    match = re.search(r'<p class="field-error" id="password-error">([^<]*)</p>', response.get_data(as_text=True))
    return match.group(1) if match else ""


def from_address(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def assert_locked(response, pattern, limit_seconds):
    assert response.status_code == 429
    message = password_error(response)
    match = pattern.fullmatch(message)
    assert match, f"not a lock message: {message!r}"
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= limit_seconds
    assert int(match.group(1)) == -(-retry_after // 60)  # the minutes the header says, rounded up
    assert csrf_from(response)  # the form is still there to try again later


# --- per account -----------------------------------------------------------------------------

def test_forty_quick_guesses_lock_the_account_and_even_the_right_password_then_waits(app, client):
    name = new_user(app)
    answers = [post_login(client, name, f"guess-{i}") for i in range(40)]
    assert [password_error(r) for r in answers[:5]] == [WRONG] * 5
    assert all(r.status_code == 400 for r in answers[:5])
    for response in answers[5:]:
        assert_locked(response, ACCOUNT_LOCKED, 5 * 60)

    assert_locked(post_login(client, name, "pw"), ACCOUNT_LOCKED, 5 * 60)
    # The lock is on the account, not on everyone: another administrator signs in.
    assert signed_in(post_login(app.test_client(), new_user(app), "pw"))


def test_guesses_sent_at_the_same_moment_cannot_slip_under_the_limit(app):
    from concurrent.futures import ThreadPoolExecutor

    name = new_user(app)
    clients = [app.test_client() for _ in range(20)]
    tokens = [csrf_from(c.get("/login")) for c in clients]

    def guess(i):
        return clients[i].post("/login", data={"username": name, "password": f"guess-{i}",
                                               "csrf_token": tokens[i]}).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(20)))
    assert codes.count(400) == 5, codes  # five passwords checked, however the guesses interleave
    assert codes.count(429) == 15, codes


def test_usernames_differing_in_case_or_spaces_share_one_account_lock(app, client):
    name = new_user(app)
    for variant in (name, name.upper(), f"  {name} ", name.title(), f"{name}\t"):
        assert password_error(post_login(client, variant, "wrong")) == WRONG
    assert_locked(post_login(client, name, "pw"), ACCOUNT_LOCKED, 5 * 60)


def test_the_account_lock_is_the_same_for_unknown_user_names(app, client):
    for _ in range(5):
        assert password_error(post_login(client, "nobody-here", "x")) == WRONG
    assert_locked(post_login(client, "nobody-here", "x"), ACCOUNT_LOCKED, 5 * 60)


def test_correct_sign_ins_are_never_slowed(app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_FAILURES_PER_ACCOUNT", "2 per 5 minutes")
    monkeypatch.setitem(app.config, "LOGIN_FAILURES_PER_ADDRESS", "2 per 5 minutes")
    name = new_user(app)
    for _ in range(6):
        assert signed_in(post_login(app.test_client(), name, "pw"))
    # Below the limit a mistake is answered as usual and the right password still works.
    client = app.test_client()
    assert password_error(post_login(client, name, "typo")) == WRONG
    assert signed_in(post_login(client, name, "pw"))


def test_the_lock_ends_by_itself(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_FAILURES_PER_ACCOUNT", "2 per 2 seconds")
    name = new_user(app)
    for _ in range(2):
        assert password_error(post_login(client, name, "wrong")) == WRONG
    assert post_login(client, name, "pw").status_code == 429
    wait_for(lambda: signed_in(post_login(client, name, "pw")), timeout=15, interval=0.25,
             message="the account lock to end")


def test_the_default_lock_lasts_minutes_not_hours(app, client):
    name = new_user(app)
    for _ in range(5):
        post_login(client, name, "wrong")
    response = post_login(client, name, "pw")
    assert_locked(response, ACCOUNT_LOCKED, 5 * 60)
    assert "5 minutes" in password_error(response)


# --- per address -----------------------------------------------------------------------------

def test_many_user_names_tried_from_one_address_lock_that_address(app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_FAILURES_PER_ADDRESS", "4 per 5 minutes")
    name = new_user(app)
    attacker = from_address(app, "203.0.113.9")
    for i in range(4):
        assert password_error(post_login(attacker, f"guess-{i}", "pw")) == WRONG
    assert_locked(post_login(attacker, name, "pw"), ADDRESS_LOCKED, 5 * 60)
    # The account itself is not locked: its owner signs in from elsewhere.
    assert signed_in(post_login(from_address(app, "198.51.100.7"), name, "pw"))


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_the_one_locked(app, monkeypatch):
    from config import TestConfig
    from webapp import create_app

    monkeypatch.setenv("FIRETIME_PROXY_HOPS", "1")
    proxied = create_app(TestConfig)
    proxied.config["LOGIN_FAILURES_PER_ADDRESS"] = "3 per 5 minutes"
    name = new_user(app)

    def via_proxy(client_address):
        client = from_address(proxied, "10.0.0.1")  # every request comes from the proxy
        client.environ_base["HTTP_X_FORWARDED_FOR"] = client_address
        return client

    attacker = via_proxy("203.0.113.9")
    for i in range(3):
        assert password_error(post_login(attacker, f"guess-{i}", "pw")) == WRONG
    assert_locked(post_login(attacker, name, "pw"), ADDRESS_LOCKED, 5 * 60)
    # Another client behind the same proxy is not locked out with the attacker.
    assert signed_in(post_login(via_proxy("198.51.100.7"), name, "pw"))


# --- when Redis is away ----------------------------------------------------------------------

@pytest.fixture
def redis_outage(app, redis_server):
    """Stop the test Redis; start it again (empty) afterwards, and wait until throttling counts
    in Redis again."""
    redis_server.stop()
    try:
        yield
    finally:
        redis_server.start()
    conn = redis_lib.Redis.from_url(redis_server.url)
    probe, names = app.test_client(), count()
    wait_for(lambda: post_login(probe, f"probe-{next(names)}", "x").status_code == 400 and conn.keys("LIMITS*"),
             timeout=20, interval=0.5, message="throttling to count in Redis again")


def test_sign_in_works_and_is_still_throttled_while_redis_is_down(app, client, redis_outage):
    name = new_user(app)
    assert signed_in(post_login(app.test_client(), name, "pw"))
    for _ in range(5):
        response = post_login(client, name, "wrong")
        assert response.status_code == 400 and password_error(response) == WRONG
    assert_locked(post_login(client, name, "pw"), ACCOUNT_LOCKED, 5 * 60)
    assert signed_in(post_login(app.test_client(), new_user(app), "pw"))


# --- API tokens ------------------------------------------------------------------------------

def api_get(client, token):
    return client.get("/api/scheduled-jobs", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def token(app, monkeypatch):
    """A good API token, with a limit of 3 bad ones a minute per address."""
    monkeypatch.setitem(app.config, "API_TOKEN_FAILURES_PER_ADDRESS", "3 per minute")
    with app.app_context():
        _, plain = ApiToken.issue(make_user(Role.SYSTEM))
        db.session.commit()
    return plain


def test_bad_api_tokens_lock_the_address_with_429_json(app, token):
    prober = from_address(app, "203.0.113.50")
    for _ in range(5):
        assert api_get(prober, token).status_code == 200  # good tokens never count
    for i in range(3):
        assert api_get(prober, f"ft_guess{i}").status_code == 401
    response = api_get(prober, token)
    assert response.status_code == 429
    body = response.get_json()
    assert body["code"] == 429 and body["status"] == "Too Many Requests"
    assert "Too many requests with a bad API token" in body["message"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    # Other addresses are not affected.
    assert api_get(from_address(app, "198.51.100.8"), token).status_code == 200


def test_calls_without_a_token_do_not_lock_the_address(app, token):
    client = from_address(app, "203.0.113.51")
    for _ in range(5):
        assert client.get("/api/scheduled-jobs").status_code == 401
    assert api_get(client, token).status_code == 200
