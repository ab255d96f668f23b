"""The audit page and its CSV: each role reads exactly the records permissions.audit_query gives
it, filtered and paged as the URL says; and no one, through the ORM, a bulk statement or any
route, can change or delete a record."""
import csv
import io
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, select, update

from tests.factories import csrf_from, make_domain, make_job, make_user
from tests.integration.test_permissions import (  # noqa: F401  (fixtures)
    _quick_password_hashes, user_for, world)
from webapp.audit.export import safe_cell
from webapp.extensions import db
from webapp.models import AuditEvent, Job, Role, Run, User
from webapp.models.audit import AuditIsAppendOnly, record

UTC = timezone.utc

# Which of the records made below each role reads (as in test_permissions' audit test).
READABLE = {
    "superadmin": {"mark-install", "mark-a", "mark-a1", "mark-b", "mark-run-a", "mark-password-b"},
    "sysadmin": {"mark-install", "mark-a", "mark-a1", "mark-run-a"},
    "admin_a": {"mark-a", "mark-a1", "mark-run-a"},
    "admin_b": {"mark-b", "mark-password-b"},
    "admin_a1": {"mark-a1"},
}


def _records(app, world, user_for) -> dict:
    """A user of each role, and one record per kind, each with a message naming it, made by the
    system (no actor). Returns role -> user name."""
    names = {role: user_for(role) for role in READABLE}
    with app.app_context():
        jobs = {key: db.session.get(Job, world.jobs[key]) for key in ("install", "a", "a1", "b")}
        for key, job in jobs.items():
            record("edit", "job", job, actor=None, before={"name": "old"}, after={"name": job.name},
                   message=f"mark-{key}")
        run = db.session.get(Run, world.runs["a"])
        record("cancel", "run", run, actor=None, domain_id=jobs["a"].domain_id, message="mark-run-a")
        admin_b = db.session.scalar(select(User).where(User.username == names["admin_b"]))
        record("password", "user", admin_b, actor=None, message="mark-password-b")
        db.session.commit()
    return names


def _marks(text: str) -> set[str]:
    return set(re.findall(r'<p class="message">(mark-[^<]+)</p>', text))


def _csv_rows(response) -> list[dict]:
    body = b"".join(response.response).decode()
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:])))


@pytest.mark.parametrize("role", list(READABLE))
def test_page_and_csv_show_exactly_the_records_the_role_may_read(app, world, user_for, login_as, role):
    names = _records(app, world, user_for)
    client = login_as(SimpleNamespace(username=names[role]))
    page = client.get("/audit/")
    assert page.status_code == 200
    assert _marks(page.get_data(as_text=True)) == READABLE[role]
    response = client.get("/audit/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _csv_rows(response)
    assert {row["message"] for row in rows} & READABLE["superadmin"] == READABLE[role]
    # The user's own sign-in is theirs to read, whatever the role; other people's are not.
    sign_ins = {row["who"] for row in rows if row["action"] == "login"}
    assert sign_ins == {names[role]}


def test_a_domain_administrator_reads_its_own_actions_but_not_other_peoples_accounts(app, client, login_as):
    with app.app_context():
        study = make_domain("Study")
        me = make_user(Role.DOMAIN_ADMIN, domain=study, username="me")
        other = make_user(Role.DOMAIN_ADMIN, domain=make_domain("Elsewhere"), username="other")
        record("login", "user", other, actor=other, message="other-signs-in")
        record("edit", "job", make_job("Elsewhere job", domain=other.domain), actor=me, message="my-edit-elsewhere")
        db.session.commit()
    login_as(SimpleNamespace(username="me"))
    text = client.get("/audit/").get_data(as_text=True)
    assert "my-edit-elsewhere" in text and "other-signs-in" not in text


def _event(at, actor="root", action="edit", object_type="job", object_id=1, message=""):
    db.session.add(AuditEvent(at=at, actor_name=actor, action=action, object_type=object_type, object_id=object_id,
                              object_name=f"obj-{object_id}", message=message))


@pytest.fixture
def superadmin(app, login_as):
    with app.app_context():
        make_user(Role.SUPERADMIN, username="root")
    return login_as(SimpleNamespace(username="root"))


def test_filters_are_in_the_url_and_narrow_page_and_csv_alike(app, superadmin):
    client = superadmin
    with app.app_context():
        _event(datetime(2026, 3, 1, 12, tzinfo=UTC), actor="alice", action="edit", message="m-alice-edit")
        _event(datetime(2026, 3, 2, 12, tzinfo=UTC), actor="bob", action="remove", message="m-bob-remove")
        _event(datetime(2026, 3, 3, 12, tzinfo=UTC), actor="alice", action="create", object_type="user",
               object_id=7, message="m-alice-user")
        # 23:30 UTC on 3 March is 00:30 on 4 March in Amsterdam, the server's zone in the tests.
        _event(datetime(2026, 3, 3, 23, 30, tzinfo=UTC), actor="carol_x", action="edit", message="m-carol")
        db.session.commit()
    cases = {
        "who=ALI": {"m-alice-edit", "m-alice-user"},
        "who=l_x": {"m-carol"},  # _ is a letter, not a wildcard
        "who=%25": set(),
        "action=edit": {"m-alice-edit", "m-carol"},
        "object_type=user": {"m-alice-user"},
        "object_type=job&object_id=7": set(),
        "object_type=user&object_id=7": {"m-alice-user"},
        "date_from=2026-03-02&date_to=2026-03-03": {"m-bob-remove", "m-alice-user"},
        "date_from=2026-03-04": {"m-carol"},
        "who=alice&action=create&date_to=2026-03-03": {"m-alice-user"},
    }
    everything = {"m-alice-edit", "m-bob-remove", "m-alice-user", "m-carol"}
    for query, expected in cases.items():
        page = client.get(f"/audit/?{query}").get_data(as_text=True)
        assert {m for m in everything if m in page} == expected, query
        rows = _csv_rows(client.get(f"/audit/export.csv?{query}"))
        assert {row["message"] for row in rows} & everything == expected, query
    # The page's download link carries the filters.
    page = client.get("/audit/?who=alice&action=edit").get_data(as_text=True)
    assert 'href="/audit/export.csv?who=alice&amp;action=edit"' in page


def test_bad_filters_are_told_next_to_their_field_and_never_a_500(app, superadmin):
    client = superadmin
    for query, message in (("date_from=2026-13-01", "Not a day of the calendar"),
                           ("date_from=1066-10-14", "Give a date between"),
                           ("date_from=2026-03-05&date_to=2026-03-01", "“To” is before “From”."),
                           ("who=" + "x" * 81, "longer than 80")):
        response = client.get(f"/audit/?{query}")
        assert response.status_code == 200, query
        text = response.get_data(as_text=True)
        assert message in text and 'class="field-error"' in text and 'aria-invalid="true"' in text, query
        assert client.get(f"/audit/export.csv?{query}").status_code == 200
    # An object id no record can have filters nothing rather than failing.
    for written in ("99999999999999999999", "-1", "x", "٣"):
        assert client.get(f"/audit/?object_type=job&object_id={written}").status_code == 200


def test_newest_first_fifty_a_page_and_sortable(app, superadmin):
    client = superadmin
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        for i in range(60):
            _event(start + timedelta(minutes=i), actor=f"user{i:02d}", message=f"n{i:02d}-")
        db.session.commit()
    first = client.get("/audit/?who=user").get_data(as_text=True)
    shown = [f"n{i:02d}-" for i in range(60) if f"n{i:02d}-" in first]
    assert shown == [f"n{i:02d}-" for i in range(10, 60)]
    assert first.index("n59-") < first.index("n10-")
    assert "Page 1 of 2 (60)" in first
    second = client.get("/audit/?who=user&page=2").get_data(as_text=True)
    assert [f"n{i:02d}-" for i in range(60) if f"n{i:02d}-" in second] == [f"n{i:02d}-" for i in range(10)]
    oldest_first = client.get("/audit/?who=user&sort=at&dir=asc").get_data(as_text=True)
    assert "n00-" in oldest_first and "n59-" not in oldest_first
    # Paging and sorting keep the filter; an HTMX request gets the table alone.
    assert "who=user" in first.split('aria-label="Pages"')[1].split("</nav>")[0]
    fragment = client.get("/audit/?who=user&page=2", headers={"HX-Request": "true", "HX-Target": "audit-table"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="audit-table">')
    # The CSV has them all, newest first.
    rows = _csv_rows(client.get("/audit/export.csv?who=user"))
    assert [row["message"] for row in rows] == [f"n{i:02d}-" for i in range(59, -1, -1)]


def test_before_and_after_show_as_a_difference(app, superadmin):
    with app.app_context():
        job = make_job("Nightly import")
        record("edit", "job", job, actor=None, before={"description": "old words", "plan": {"kind": "daily"}},
               after={"description": "new words", "plan": {"kind": "daily"}}, message="diff-case")
        db.session.commit()
    text = superadmin.get("/audit/?action=edit").get_data(as_text=True)
    assert "<dt>description</dt>" in text and "plan</dt>" not in text  # unchanged fields are left out
    assert "<del><span class=\"sr-only\">was </span>old words</del>" in text
    assert "<ins><span class=\"sr-only\">now </span>new words</ins>" in text


def test_csv_cells_cannot_start_a_formula(app, superadmin):
    for bad in ("=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\t=1"):
        assert safe_cell(bad) == "'" + bad
    assert safe_cell("plain") == "plain" and safe_cell(None) == "" and safe_cell(3) == "3"
    with app.app_context():
        db.session.add(AuditEvent(at=datetime(2026, 1, 1, tzinfo=UTC), actor_name="=cmd|' /C calc'!A0",
                                  action="edit", object_type="job", object_name="@evil",
                                  after={"name": "+danger"}, message="-msg"))
        db.session.commit()
    row = _csv_rows(superadmin.get("/audit/export.csv?action=edit"))[0]
    assert row["who"] == "'=cmd|' /C calc'!A0" and row["object_name"] == "'@evil" and row["message"] == "'-msg"
    assert row["changes"] == "name: — → +danger"  # starts with a letter: left as it is


# --- append only -------------------------------------------------------------------------------

def _snapshot():
    return {e.id: (e.at, e.actor_name, e.action, e.object_type, e.object_id, e.object_name, e.before, e.after,
                   e.message, e.run_id, e.domain_id)
            for e in db.session.scalars(select(AuditEvent))}


def test_the_application_refuses_to_change_or_delete_an_audit_record(ctx):
    event = record("create", "job", make_job("Kept"), actor=None, after={"name": "Kept"})
    db.session.commit()
    before = _snapshot()

    event.message = "rewritten"
    with pytest.raises(AuditIsAppendOnly):
        db.session.commit()
    db.session.rollback()
    db.session.delete(db.session.get(AuditEvent, event.id))
    with pytest.raises(AuditIsAppendOnly):
        db.session.commit()
    db.session.rollback()
    for statement in (update(AuditEvent).values(message="rewritten"), delete(AuditEvent),
                      update(AuditEvent).where(AuditEvent.id == event.id).values(actor_name="someone else"),
                      delete(AuditEvent).where(AuditEvent.id == event.id)):
        with pytest.raises(AuditIsAppendOnly):
            db.session.execute(statement)
        db.session.rollback()
    db.session.expire_all()
    assert _snapshot() == before


def test_no_route_changes_or_deletes_an_audit_record(app, client, login_as):
    """Every route of the app, every method it takes, as a superadmin with a valid CSRF token and
    the record's id in every id of the path (and in the form): the records stay as they were."""
    from tests.integration.test_hostile_input import ARG, routes

    with app.app_context():
        root = make_user(Role.SUPERADMIN, username="root")
        other = make_user(Role.SUPERADMIN, username="other-root")
        job = make_job("Audited job", domain=make_domain("Audited domain"))
        for i in range(3):
            record("edit", "job", job, actor=root, before={"n": i}, after={"n": i + 1}, message=f"keep-{i}")
        record("create", "user", other, actor=root)
        db.session.commit()
        before = _snapshot()
        ids = sorted(before)
    login_as(SimpleNamespace(username="root"))
    token = csrf_from(client.get("/jobs/new"))
    for rule in routes(app):
        if rule.endpoint in ("auth.logout", "static"):
            continue
        for event_id in ids:
            url = ARG.sub(lambda m: str(event_id), rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                data = {"csrf_token": token, "id": event_id, "event_id": event_id, "audit_id": event_id,
                        "confirm": "yes"} if method != "GET" else None
                response = client.open(url, method=method, data=data, buffered=False)
                response.close()
    with app.app_context():
        after = _snapshot()
    assert {i: after.get(i) for i in before} == before
