"""The admin pages: users and their API tokens, domains, settings. For superadmins only (404 to
everyone else, CSRF on every change); every change audited with the superadmin who made it."""
import re
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.auth.permissions import can_use_support
from webapp.extensions import db
from webapp.models import ApiToken, AuditEvent, Domain, Role, Setting, User
from webapp.models.settings import get_setting


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


@pytest.fixture
def root(app, client, login_as):
    """A signed-in superadmin: the client and a CSRF token."""
    with app.app_context():
        make_user(Role.SUPERADMIN, username="root")
    login_as(SimpleNamespace(username="root"))
    return SimpleNamespace(client=client, token=csrf_from(client.get("/admin/users")))


def errors(response) -> list[str]:
    return re.findall(r'class="field-error" id="([^"]+)-error">([^<]*)<', response.get_data(as_text=True))


def flashes(response) -> list[str]:
    return re.findall(r'class="flash flash-\w+" role="status">([^<]*)<', response.get_data(as_text=True))


def audit(app, action=None):
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return [SimpleNamespace(action=e.action, actor=e.actor_name, object_type=e.object_type, name=e.object_name,
                                before=e.before, after=e.after) for e in db.session.scalars(query)]


def user_named(app, name) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        db.session.expunge_all()
        return user


def admin_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin.")]


def url_of(rule, value=1) -> str:
    return rule.build({name: value for name in rule.arguments})[1]


# --- who may use the admin pages ---------------------------------------------------------------

@pytest.mark.parametrize("role", [Role.SYSADMIN, Role.DOMAIN_ADMIN])
def test_every_admin_route_is_404_for_everyone_but_superadmins(app, client, login_as, role):
    with app.app_context():
        domain = make_domain("Study")
        other = make_user(Role.DOMAIN_ADMIN, domain=domain, username="someone")
        _, _plain = ApiToken.issue(other, "t")
        db.session.commit()
        me = make_user(role, domain=domain if role == Role.DOMAIN_ADMIN else None,
                       supervised=[domain] if role == Role.SYSADMIN else [], username="me")
        ids = {"user_id": other.id, "domain_id": domain.id, "token_id": 1}
        my_id = me.id
    login_as(SimpleNamespace(username="me"))
    token = csrf_from(client.get("/jobs/"))
    rules = admin_rules(app)
    assert len(rules) >= 10
    for rule in rules:
        url = rule.build({name: ids[name] for name in rule.arguments})[1]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            data = {"csrf_token": token, "role": "superadmin", "name": "x", "password": "new-password",
                    "confirm": "new-password"} if method == "POST" else None
            assert client.open(url, method=method, data=data).status_code == 404, (method, url)
        # The same for the user's own account.
        own = rule.build({**{name: ids[name] for name in rule.arguments}, "user_id": my_id})[1]
        assert client.get(own).status_code in (404, 405)
    assert "/admin/" not in client.get("/jobs/").get_data(as_text=True)  # not linked either
    assert user_named(app, "me").role == role and user_named(app, "someone").active


def test_signed_out_visitors_are_sent_to_sign_in(app, client):
    for rule in admin_rules(app):
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url_of(rule), method=method)
            if method == "POST":
                assert response.status_code in (302, 400), rule.rule  # 400: no CSRF token
            else:
                assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"


def test_every_change_needs_a_csrf_token(app, root):
    with app.app_context():
        target = make_user(Role.DOMAIN_ADMIN, domain=make_domain("Study"), username="target")
        _, _plain = ApiToken.issue(target, "t")
        db.session.commit()
        ids = {"user_id": target.id, "domain_id": target.domain_id,
               "token_id": db.session.scalar(select(ApiToken.id))}
    before = len(audit(app))
    for rule in admin_rules(app):
        if "POST" not in rule.methods:
            continue
        url = rule.build({name: ids[name] for name in rule.arguments})[1]
        data = {"name": "New", "username": "new-user", "role": "superadmin", "password": "long-enough",
                "confirm": "long-enough", "retention_days": "5", "report_sender": "a@example.org",
                "base_url": "https://x.example.org", "support_roles": "superadmin"}
        response = root.client.post(url, data=data)
        assert response.status_code == 400, rule.rule
        assert "CSRF" in response.get_data(as_text=True)
    assert len(audit(app)) == before
    assert user_named(app, "target").active and user_named(app, "new-user") is None


# --- users -------------------------------------------------------------------------------------

def test_the_new_user_form_starts_at_the_least_privileged_role(app, root):
    page = root.client.get("/admin/users/new").get_data(as_text=True)
    selected = re.findall(r'<option[^>]*\bselected\b[^>]*>([^<]*)</option>', page)
    assert selected[:1] == ["Domain administrator"], selected
    # Sent as it opens (a name and password only), it asks for the domain the role needs.
    response = root.client.post("/admin/users/new", data={
        "csrf_token": root.token, "username": "dora", "role": "domain_admin", "password": "long-enough",
        "confirm": "long-enough", "domain_id": ""})
    assert response.status_code == 400
    assert "A domain administrator needs a domain." in response.get_data(as_text=True)
    assert user_named(app, "dora") is None


def test_create_a_user_audited_under_the_superadmin(app, root):
    with app.app_context():
        study = make_domain("Study")
        site = make_domain("Site", parent=study)
        ids = study.id, site.id
    response = root.client.post("/admin/users/new", data={
        "csrf_token": root.token, "username": "carla", "email": "Carla@Example.org", "role": "sysadmin",
        "password": "long-enough", "confirm": "long-enough", "supervised": [str(ids[0]), str(ids[1])]})
    assert response.status_code == 302
    carla = user_named(app, "carla")
    assert urlsplit(response.headers["Location"]).path == f"/admin/users/{carla.id}"
    with app.app_context():
        carla = db.session.get(User, carla.id)
        assert carla.role == Role.SYSADMIN and carla.email == "Carla@example.org"
        assert sorted(d.name for d in carla.supervised) == ["Site", "Study"]
    [created] = audit(app, "create")
    assert (created.actor, created.object_type, created.name) == ("root", "user", "carla")
    assert created.after == {"role": "sysadmin", "email": "Carla@example.org", "supervised": ["Site", "Study"],
                             "active": True}
    page = root.client.get("/admin/users").get_data(as_text=True)
    assert "carla" in page and "Site, Study" in page
    # She signs in with that password.
    other = app.test_client()
    assert other.post("/login", data={"username": "carla", "password": "long-enough",
                                      "csrf_token": csrf_from(other.get("/login"))}).status_code == 302


@pytest.mark.parametrize("data, field, message", [
    ({"username": ""}, "username", "This field is required."),
    ({"username": "has space"}, "username", "Use letters, digits and . _ @ - only"),
    ({"username": "ROOT"}, "username", "There is already a user named “ROOT”."),
    ({"password": "short", "confirm": "short"}, "password", "Use 8 to 200 characters."),
    ({"confirm": "different-one"}, "confirm", "The two passwords differ."),
    ({"password": "", "confirm": ""}, "password", "Give a password"),
    ({"role": "domain_admin"}, "domain_id", "A domain administrator needs a domain."),
    ({"role": "emperor"}, "role", "Not a valid choice"),
    ({"email": "not-an-address"}, "email", "is not a valid email address"),
    ({"email": "a@example.org, b@example.org"}, "email", "Give one email address."),
    ({"domain_id": "99999"}, "domain_id", "Not a valid choice"),
    ({"supervised": "x"}, "supervised", "could not be coerced"),
])
def test_a_bad_new_user_is_told_next_to_the_field(app, root, data, field, message):
    form = {"csrf_token": root.token, "username": "newbie", "role": "sysadmin", "password": "long-enough",
            "confirm": "long-enough", **data}
    response = root.client.post("/admin/users/new", data=form)
    assert response.status_code == 400
    assert any(name == field and message in text for name, text in errors(response)), errors(response)
    assert user_named(app, "newbie") is None


def test_a_system_account_needs_no_password(app, root):
    response = root.client.post("/admin/users/new", data={"csrf_token": root.token, "username": "robot",
                                                          "role": "system"})
    assert response.status_code == 302
    page = root.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Reset password" not in page and "API tokens" in page


def test_edit_role_domain_and_supervised_domains(app, root):
    with app.app_context():
        study, other = make_domain("Study"), make_domain("Other")
        user = make_user(Role.DOMAIN_ADMIN, domain=study, username="dana")
        ids = user.id, study.id, other.id
    response = root.client.post(f"/admin/users/{ids[0]}", data={
        "csrf_token": root.token, "role": "sysadmin", "email": "", "domain_id": "", "supervised": [str(ids[1]),
                                                                                                 str(ids[2])]})
    assert response.status_code == 302
    assert flashes(root.client.get(response.headers["Location"])) == ["dana is saved."]
    with app.app_context():
        dana = db.session.get(User, ids[0])
        assert dana.role == Role.SYSADMIN and dana.domain is None
        assert sorted(d.name for d in dana.supervised) == ["Other", "Study"]
    [edit] = audit(app, "edit")
    assert edit.actor == "root" and edit.name == "dana"
    assert edit.before == {"role": "domain_admin", "domain": "Study", "supervised": []}
    assert edit.after == {"role": "sysadmin", "domain": "", "supervised": ["Other", "Study"]}
    # Saving it unchanged records nothing.
    root.client.post(f"/admin/users/{ids[0]}", data={"csrf_token": root.token, "role": "sysadmin",
                                                      "supervised": [str(ids[1]), str(ids[2])]})
    assert len(audit(app, "edit")) == 1


def test_the_last_active_superadmin_is_neither_demoted_nor_deactivated(app, root):
    me = user_named(app, "root")
    page = root.client.get(f"/admin/users/{me.id}").get_data(as_text=True)
    assert "is the last active superadmin" in page and "Deactivate root</button>" not in page
    response = root.client.post(f"/admin/users/{me.id}", data={"csrf_token": root.token, "role": "sysadmin"})
    assert response.status_code == 400
    assert ("role", "root is the last active superadmin: changing the role would leave nobody able to manage "
            "users, domains and settings. Make another user superadmin first.") in errors(response)
    # A second superadmin, deactivated, does not count; deactivating the last one is refused too.
    with app.app_context():
        second = make_user(Role.SUPERADMIN, username="second")
        second.active = False
        db.session.commit()
        second_id = second.id
    from webapp import accounts
    with app.app_context():
        with pytest.raises(accounts.LastSuperadmin):
            accounts.deactivate(db.session.get(User, me.id), actor=db.session.get(User, second_id))
    assert user_named(app, "root").role == Role.SUPERADMIN and user_named(app, "root").active
    # With another active superadmin, root may step down (and the other may not deactivate the last).
    root.client.post(f"/admin/users/{second_id}/reactivate", data={"csrf_token": root.token})
    response = root.client.post(f"/admin/users/{me.id}", data={"csrf_token": root.token, "role": "sysadmin"})
    assert response.status_code == 302 and user_named(app, "root").role == Role.SYSADMIN
    assert urlsplit(response.headers["Location"]).path == "/"  # not to a page that is now 404
    assert root.client.get("/admin/users").status_code == 404  # no longer a superadmin


def test_deactivate_ends_sessions_and_tokens_and_reactivate_restores(app, root):
    with app.app_context():
        eve = make_user(Role.DOMAIN_ADMIN, domain=make_domain("Study"), username="eve")
        _, plain = ApiToken.issue(eve, "script")
        db.session.commit()
        eve_id = eve.id
    eve_client = app.test_client()
    eve_client.post("/login", data={"username": "eve", "password": "pw", "csrf_token": csrf_from(eve_client.get("/login"))})
    assert eve_client.get("/jobs/").status_code == 200
    bearer = {"Authorization": f"Bearer {plain}"}
    assert app.test_client().get("/api/scheduled-jobs", headers=bearer).status_code == 200

    response = root.client.post(f"/admin/users/{eve_id}/deactivate", data={"csrf_token": root.token})
    assert flashes(root.client.get(response.headers["Location"]))[0].startswith("eve is deactivated")
    assert eve_client.get("/jobs/").status_code == 302
    assert app.test_client().get("/api/scheduled-jobs", headers=bearer).status_code == 401
    assert "Deactivated" in root.client.get("/admin/users").get_data(as_text=True)

    response = root.client.post(f"/admin/users/{eve_id}/reactivate", data={"csrf_token": root.token})
    assert flashes(root.client.get(response.headers["Location"])) == ["eve is active again."]
    assert user_named(app, "eve").active
    assert app.test_client().get("/api/scheduled-jobs", headers=bearer).status_code == 200
    assert [(e.action, e.actor, e.name) for e in audit(app) if e.action.endswith("activate")] == [
        ("deactivate", "root", "eve"), ("reactivate", "root", "eve")]
    # Nobody deactivates themselves.
    me = user_named(app, "root")
    with app.app_context():
        make_user(Role.SUPERADMIN, username="spare")
    response = root.client.post(f"/admin/users/{me.id}/deactivate", data={"csrf_token": root.token})
    assert flashes(root.client.get(response.headers["Location"])) == [
        "You cannot deactivate yourself; another superadmin can."]


def test_reset_password(app, root):
    with app.app_context():
        fay_id = make_user(Role.SYSADMIN, username="fay").id
    fay = app.test_client()
    fay.post("/login", data={"username": "fay", "password": "pw", "csrf_token": csrf_from(fay.get("/login"))})
    bad = root.client.post(f"/admin/users/{fay_id}/password", data={"csrf_token": root.token, "password": "short",
                                                                    "confirm": "short"})
    assert bad.status_code == 400 and ("password", "Use 8 to 200 characters.") in errors(bad)
    response = root.client.post(f"/admin/users/{fay_id}/password", data={
        "csrf_token": root.token, "password": "brand-new-pass", "confirm": "brand-new-pass"})
    assert response.status_code == 302
    assert fay.get("/jobs/").status_code == 302  # signed out everywhere
    assert fay.post("/login", data={"username": "fay", "password": "pw",
                                    "csrf_token": csrf_from(fay.get("/login"))}).status_code == 400
    assert fay.post("/login", data={"username": "fay", "password": "brand-new-pass",
                                    "csrf_token": csrf_from(fay.get("/login"))}).status_code == 302
    [event] = audit(app, "password")
    assert (event.actor, event.name) == ("root", "fay")


def test_api_token_shown_once_then_revoked(app, root):
    with app.app_context():
        user_id = make_user(Role.SYSTEM, username="robot").id
    assert ("name", "Name the token after what will use it.") in errors(
        root.client.post(f"/admin/users/{user_id}/tokens", data={"csrf_token": root.token, "name": ""}))
    response = root.client.post(f"/admin/users/{user_id}/tokens", data={"csrf_token": root.token,
                                                                         "name": "nightly export"})
    assert response.status_code == 200
    [plain] = re.findall(r'id="new-token">(ft_[^<]+)<', response.get_data(as_text=True))
    # Shown once: not on the page again, not in the session cookie, not in the database.
    page = root.client.get(f"/admin/users/{user_id}").get_data(as_text=True)
    assert plain not in page and "nightly export" in page and "never" in page
    assert plain not in str(root.client.get_cookie("session").value if root.client.get_cookie("session") else "")
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        assert plain not in (token.token_hash, token.name)
        token_id = token.id
    assert app.test_client().get("/api/scheduled-jobs", headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    page = root.client.get(f"/admin/users/{user_id}").get_data(as_text=True)
    row = page.split(f'id="token-{token_id}"')[1].split("</tr>")[0]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row.split("</td>")[2])  # last used

    # Revoking needs the token to belong to the user in the path.
    with app.app_context():
        other_id = make_user(Role.SYSTEM, username="other-robot").id
    assert root.client.post(f"/admin/users/{other_id}/tokens/{token_id}/revoke",
                            data={"csrf_token": root.token}).status_code == 404
    response = root.client.post(f"/admin/users/{user_id}/tokens/{token_id}/revoke", data={"csrf_token": root.token})
    assert response.status_code == 302
    assert app.test_client().get("/api/scheduled-jobs", headers={"Authorization": f"Bearer {plain}"}).status_code == 401
    row = root.client.get(f"/admin/users/{user_id}").get_data(as_text=True).split(f'id="token-{token_id}"')[1]
    assert "Revoked" in row.split("</tr>")[0] and "Revoke</button>" not in row.split("</tr>")[0]
    assert [(e.action, e.actor, e.name, e.message if hasattr(e, "message") else None)[:3]
            for e in audit(app) if e.action.startswith("token")] == [
        ("token_create", "root", "robot"), ("token_revoke", "root", "robot")]


def test_users_list_is_paged_and_found(app, root):
    with app.app_context():
        for i in range(60):
            make_user(Role.SYSADMIN, username=f"member{i:02d}")
    page = root.client.get("/admin/users").get_data(as_text=True)
    assert "Page 1 of 2 (61)" in page and "member00" in page and "member59" not in page
    assert "member59" in root.client.get("/admin/users?page=2").get_data(as_text=True)
    found = root.client.get("/admin/users?q=ber0").get_data(as_text=True)
    assert "member05" in found and "member15" not in found and "root" not in found.split("<tbody>")[1]
    assert "member00" not in root.client.get("/admin/users?q=%25").get_data(as_text=True)  # % is a letter


# --- domains -----------------------------------------------------------------------------------

def test_domains_tree_create_rename_move(app, root):
    client, token = root.client, root.token
    assert client.post("/admin/domains", data={"csrf_token": token, "name": "Study"}).status_code == 302
    study = db_id(app, "Study")
    assert client.post("/admin/domains", data={"csrf_token": token, "name": "Site 1",
                                               "parent_id": str(study)}).status_code == 302
    site = db_id(app, "Site 1")
    refused = client.post("/admin/domains", data={"csrf_token": token, "name": "study"})
    assert ("name", "There is already a domain named “study”.") in errors(refused)
    tree = client.get("/admin/domains").get_data(as_text=True)
    assert re.search(r'id="domain-%d">.*?<ul>\s*<li id="domain-%d">' % (study, site), tree, re.S)

    # Rename, then move under a new top-level domain.
    assert client.post(f"/admin/domains/{site}", data={"csrf_token": token, "name": "Site One",
                                                       "parent_id": str(study)}).status_code == 302
    client.post("/admin/domains", data={"csrf_token": token, "name": "Programme"})
    programme = db_id(app, "Programme")
    assert client.post(f"/admin/domains/{study}", data={"csrf_token": token, "name": "Study",
                                                        "parent_id": str(programme)}).status_code == 302
    with app.app_context():
        assert db.session.get(Domain, study).parent_id == programme
    assert [(e.action, e.actor, e.before, e.after) for e in audit(app) if e.action in ("rename", "move")] == [
        ("rename", "root", {"name": "Site 1", "parent": "Study"}, {"name": "Site One", "parent": "Study"}),
        ("move", "root", {"name": "Study", "parent": ""}, {"name": "Study", "parent": "Programme"})]


def db_id(app, name) -> int:
    with app.app_context():
        return db.session.scalar(select(Domain.id).where(Domain.name == name))


def test_a_domain_cannot_move_under_itself_or_below_itself(app, root):
    with app.app_context():
        top = make_domain("Top")
        middle = make_domain("Middle", parent=top)
        leaf = make_domain("Leaf", parent=middle)
        ids = top.id, middle.id, leaf.id
    page = root.client.get(f"/admin/domains/{ids[0]}").get_data(as_text=True)
    options = re.findall(r'<option[^>]*value="(\d+)"', page.split('id="parent_id"')[1].split("</select>")[0])
    assert options == []  # only "top level": nothing else is outside Top's own branch
    for parent, message in ((ids[0], "A domain cannot be placed under itself."),
                            (ids[2], "“Leaf” is below “Top”: moving it there would make a loop."),
                            (99999, "Choose a domain from the list."),
                            (2**31, "Invalid Choice: could not coerce.")):
        response = root.client.post(f"/admin/domains/{ids[0]}", data={"csrf_token": root.token, "name": "Top",
                                                                       "parent_id": str(parent)})
        assert response.status_code == 400 and ("parent_id", message) in errors(response)
    with app.app_context():
        assert db.session.get(Domain, ids[0]).parent_id is None


def test_a_domain_in_use_cannot_be_deleted_and_the_page_says_why(app, root):
    with app.app_context():
        used = make_domain("Used")
        make_job("A job", domain=used)
        make_user(Role.DOMAIN_ADMIN, domain=used, username="member")
        free = make_domain("Free")
        ids = used.id, free.id
    page = root.client.get(f"/admin/domains/{ids[0]}").get_data(as_text=True)
    assert "cannot be deleted" in page and "1 job runs in it: move or delete it first." in page
    assert "1 user belongs to it: give that user another domain first." in page
    assert 'disabled aria-describedby="cannot-delete"' in page
    response = root.client.post(f"/admin/domains/{ids[0]}/delete", data={"csrf_token": root.token})
    assert "1 job runs in it" in flashes(root.client.get(response.headers["Location"]))[0]
    assert db_id(app, "Used") == ids[0]

    assert "Nothing refers to" in root.client.get(f"/admin/domains/{ids[1]}").get_data(as_text=True)
    response = root.client.post(f"/admin/domains/{ids[1]}/delete", data={"csrf_token": root.token})
    assert urlsplit(response.headers["Location"]).path == "/admin/domains"
    assert db_id(app, "Free") is None
    assert [(e.action, e.name) for e in audit(app, "delete")] == [("delete", "Free")]
    assert root.client.get(f"/admin/domains/{ids[1]}").status_code == 404
    # A domain made and renamed on these pages has records of its own, which do not hold it back.
    root.client.post("/admin/domains", data={"csrf_token": root.token, "name": "Fresh"})
    fresh = db_id(app, "Fresh")
    root.client.post(f"/admin/domains/{fresh}", data={"csrf_token": root.token, "name": "Fresher"})
    assert "Nothing refers to" in root.client.get(f"/admin/domains/{fresh}").get_data(as_text=True)
    root.client.post(f"/admin/domains/{fresh}/delete", data={"csrf_token": root.token})
    assert db_id(app, "Fresher") is None
    assert [e.action for e in audit(app) if e.object_type == "domain"][-3:] == ["create", "rename", "delete"]


# --- settings ----------------------------------------------------------------------------------

# The linkage settings as the form sends them at their defaults (test_envelopes_page changes them).
LINKAGE_DEFAULTS = {"envelope_max_mb": "200", "linkage_threshold": "0.9", "linkage_train": "y",
                    "linkage_backend": "duckdb"}


def test_settings_default_to_the_environment_and_are_stored_audited(app, root):
    page = root.client.get("/admin/settings").get_data(as_text=True)
    assert f'value="{app.config["RETENTION_DAYS"]}"' in page and f'value="{app.config["BASE_URL"]}"' in page
    assert f'value="{app.config["MAIL_DEFAULT_SENDER"]}"' in page
    assert f'value="{app.config["SCRIPT_TIME_LIMIT"]}"' in page and f'value="{app.config["SCRIPT_MEMORY_MB"]}"' in page
    assert page.count("Default from the server") == 10
    # The sender the environment gives (firetime@localhost in the tests) may stay as it is.
    limits = {"script_time_limit": str(app.config["SCRIPT_TIME_LIMIT"]),
              "script_memory_mb": str(app.config["SCRIPT_MEMORY_MB"]), **LINKAGE_DEFAULTS}
    response = root.client.post("/admin/settings", data={
        "csrf_token": root.token, "retention_days": "45", "support_roles": ["superadmin"], **limits,
        "report_sender": app.config["MAIL_DEFAULT_SENDER"], "base_url": app.config["BASE_URL"]})
    assert response.status_code == 302
    with app.app_context():
        assert get_setting("retention_days") == 45
        assert db.session.scalar(select(Setting).where(Setting.key == "report_sender")) is None
    response = root.client.post("/admin/settings", data={
        "csrf_token": root.token, "retention_days": "30", "support_roles": ["superadmin", "sysadmin"],
        "script_time_limit": "120", "script_memory_mb": "1024", **LINKAGE_DEFAULTS,
        "report_sender": "jobs@example.org", "base_url": "https://jobs.example.org/console/"})
    assert response.status_code == 302
    with app.app_context():
        assert get_setting("retention_days") == 30
        assert get_setting("support_roles") == ["superadmin", "sysadmin"]
        assert get_setting("report_sender") == "jobs@example.org"
        assert get_setting("base_url") == "https://jobs.example.org/console"
        assert get_setting("script_time_limit") == 120 and get_setting("script_memory_mb") == 1024
        assert can_use_support(make_user(Role.SYSADMIN, username="sys"))
    first, event = audit(app, "edit")
    assert first.before == {"retention_days": app.config["RETENTION_DAYS"]} and first.after == {"retention_days": 45}
    assert event.actor == "root" and event.object_type == "setting"
    assert event.before == {"retention_days": 45, "support_roles": ["superadmin"],
                            "script_time_limit": app.config["SCRIPT_TIME_LIMIT"],
                            "script_memory_mb": app.config["SCRIPT_MEMORY_MB"],
                            "report_sender": app.config["MAIL_DEFAULT_SENDER"], "base_url": app.config["BASE_URL"]}
    assert event.after["retention_days"] == 30 and event.after["script_time_limit"] == 120
    assert root.client.get("/admin/settings").get_data(as_text=True).count("Set here") == 6


@pytest.mark.parametrize("field, value, message", [
    ("retention_days", "0", "Give a number of days from 1 to 36500."),
    ("retention_days", "99999999999999999999", "Give a number of days from 1 to 36500."),
    ("retention_days", "ten", "Not a valid integer value."),
    ("retention_days", "", "Give a number of days."),
    ("support_roles", ["sysadmin"], "Superadmins always keep the support page: tick Superadmin."),
    ("support_roles", ["superadmin", "emperor"], "is not a valid choice"),
    ("script_time_limit", "0", "Give a number of seconds from 1 to 86400."),
    ("script_time_limit", "86401", "Give a number of seconds from 1 to 86400."),
    ("script_memory_mb", "64", "Give a number of megabytes from 128 to 65536."),
    ("script_memory_mb", "", "Give a number of megabytes."),
    ("report_sender", "nobody", "is not a valid email address"),
    ("report_sender", "", "Give the address run reports are sent from."),
    ("report_sender", "someone@localhost", "It should have a period."),
    ("base_url", "ftp://jobs.example.org", "Give an address starting with http:// or https://"),
    ("base_url", "javascript:alert(1)", "Give an address starting with http:// or https://"),
    ("base_url", "https://jobs.example.org/?next=x", "cannot have spaces, a query"),
    ("base_url", "https://jobs.example.org:99999", "The port is not a number"),
])
def test_a_bad_setting_is_told_next_to_its_field_and_nothing_is_stored(app, root, field, value, message):
    data = {"csrf_token": root.token, "retention_days": "30", "support_roles": ["superadmin"],
            "script_time_limit": "600", "script_memory_mb": "512", "report_sender": "jobs@example.org",
            "base_url": "https://jobs.example.org", **LINKAGE_DEFAULTS, field: value}
    response = root.client.post("/admin/settings", data=data)
    assert response.status_code == 400
    assert any(name == field and message in text for name, text in errors(response)), errors(response)
    with app.app_context():
        assert db.session.scalar(select(Setting)) is None
    assert audit(app, "edit") == []


def test_a_domain_holding_clinical_data_or_a_dataset_cannot_be_deleted(app, root):
    from webapp.models import Dataset, Subject

    with app.app_context():
        study = make_domain("Study with data")
        db.session.add(Subject(domain_id=study.id, subject_key="S1"))
        db.session.add(Dataset(domain_id=study.id, name="Vitals"))
        db.session.commit()
        study_id = study.id
    page = root.client.get(f"/admin/domains/{study_id}").get_data(as_text=True)
    assert "1 dataset is defined on it: delete it first." in page
    assert "It holds clinical data of 1 subject." in page
    response = root.client.post(f"/admin/domains/{study_id}/delete", data={"csrf_token": root.token})
    assert response.status_code == 302  # refused with the reasons, not a 500
    assert db_id(app, "Study with data") == study_id
