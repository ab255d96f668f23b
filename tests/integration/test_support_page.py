"""The hidden support page (SPEC 8): who sees it, the list, add and edit, versions and their
difference, archive and restore, and that script jobs stay out of every other person's view."""
import re
from datetime import timedelta

import pytest
from lxml import html as lxml_html
from sqlalchemy import select

from tests.factories import csrf_from, make_domain, make_job, make_script_job, make_user
from webapp.extensions import db, redis_client
from webapp.models import ApiToken, AuditEvent, Job, Role, Run, RunStatus, Trigger
from webapp.models.scripts import ScriptVersion, script_md5
from webapp.models.settings import set_setting
from webapp.models.types import utcnow
from webapp.scheduling import sync

SCRIPT = "log('hello')\nprogress(50)\n"


# --- helpers ---------------------------------------------------------------------------------

def page_of(response):
    return lxml_html.fromstring(response.get_data(as_text=True))


def text_of(node) -> str:
    return " ".join(node.text_content().split())


def error_of(response, field: str) -> str:
    """The messages shown in the form row of `field` (or the configuration cell named so)."""
    page = page_of(response)
    errors = page.xpath(f'//*[@data-field="{field}"]//*[contains(@class, "field-error")]') or \
        page.xpath(f'//*[@id="{field}"]/following-sibling::*[contains(@class, "field-error")]')
    return " ".join(text_of(error) for error in errors)


def form_data(**fields) -> dict:
    """A new-script form as a browser sends it (CRLF line ends), with `fields` over the defaults;
    config=[(key, value), ...] fills the configuration rows."""
    data = {"name": "Nightly check", "description": "", "script": SCRIPT.replace("\n", "\r\n"),
            "poll_seconds": "60", "run_as_id": "", "time_limit": ""}
    for index, (key, value) in enumerate(fields.pop("config", [])):
        data[f"config-{index}-key"], data[f"config-{index}-value"] = key, value
    data.update(fields)
    return data


def scheduled_entries() -> dict:
    return {member.decode(): score for member, score in
            redis_client.conn.zrange(sync.scheduler().scheduled_jobs_key, 0, -1, withscores=True)}


def audits(job_id, action=None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.object_type == "job", AuditEvent.object_id == job_id)
    if action:
        query = query.where(AuditEvent.action == action)
    return db.session.scalars(query.order_by(AuditEvent.id)).all()


def versions(job_id) -> list[ScriptVersion]:
    return db.session.scalars(select(ScriptVersion).where(ScriptVersion.job_id == job_id)
                              .order_by(ScriptVersion.number)).all()


@pytest.fixture
def superadmin(ctx, login_as):
    user = make_user(Role.SUPERADMIN, username="root")
    client = login_as(user)
    client.user = user
    return client


def token_of(client, url="/support/new") -> str:
    return csrf_from(client.get(url))


def create(client, **fields):
    data = form_data(**fields)
    data["csrf_token"] = token_of(client)
    return client.post("/support/new", data=data)


def created_job(response) -> Job:
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    job_id = int(re.search(r"/support/(\d+)$", response.headers["Location"]).group(1))
    db.session.expire_all()
    return db.session.get(Job, job_id)


def edit_form(client, job) -> dict:
    """The edit form's fields as the page fills them (what a browser would post unchanged)."""
    page = page_of(client.get(f"/support/{job.id}/edit"))
    form = page.get_element_by_id("script-form")
    data = {}
    for element in form.inputs:
        if element.name is None or element.tag == "button" or element.get("type") == "submit":
            continue
        if element.get("type") == "checkbox":
            if element.checked:
                data[element.name] = element.get("value") or "y"
            continue
        value = element.value or ""
        if element.tag == "textarea":  # a browser drops the line break that follows <textarea>
            value = value.removeprefix("\r").removeprefix("\n")
        data[element.name] = value
    return data


# --- who sees it -----------------------------------------------------------------------------

def support_urls(job_id) -> list[tuple[str, str]]:
    return [("GET", "/support/"), ("GET", "/support/new"), ("POST", "/support/new"),
            ("GET", f"/support/{job_id}"), ("GET", f"/support/{job_id}/edit"), ("POST", f"/support/{job_id}/edit"),
            ("GET", f"/support/{job_id}/diff?a=1&b=1"), ("POST", f"/support/{job_id}/run"),
            ("POST", f"/support/{job_id}/archive"), ("POST", f"/support/{job_id}/restore"),
            ("GET", "/support/nothing-here")]


def test_every_support_url_is_404_to_everyone_the_setting_leaves_out(ctx, client, login_as):
    job = make_script_job(SCRIPT, name="Hidden script")
    study = make_domain("Study A")
    token = csrf_from(client.get("/login"))
    for method, url in support_urls(job.id):  # signed out: a 404, not a sign-in redirect
        response = client.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
        assert response.status_code == 404, f"signed out: {method} {url}"
    for user in (make_user(Role.DOMAIN_ADMIN, domain=study), make_user(Role.SYSADMIN, supervised=[study])):
        signed = login_as(user)
        token = csrf_from(signed.get("/jobs/"))
        assert "/support/" not in signed.get("/jobs/").get_data(as_text=True)  # no link to it either
        for method, url in support_urls(job.id):
            response = signed.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
            assert response.status_code == 404, f"{user.role}: {method} {url}"
        assert signed.get(f"/jobs/{job.id}").status_code == 404
        signed.post("/logout", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(Job, job.id).state == "active" and len(versions(job.id)) == 1


def test_to_everyone_else_a_support_url_answers_as_an_address_that_does_not_exist(ctx, app, client, login_as):
    """A POST without a CSRF token was refused with 400, and a body over the site's limit was
    read (these forms take more) and answered 404, where an unknown address answers 404 and
    413: either told anyone, signed out included, that the page exists."""
    job = make_script_job(SCRIPT, name="Hidden script")
    over_limit = "name=" + "a" * (app.config["MAX_CONTENT_LENGTH"] + 1000)
    bodies = {"no token": {"data": {"name": "x"}},
              "over the site's limit": {"data": over_limit, "content_type": "application/x-www-form-urlencoded"},
              "a NUL": {"data": {"name": "a\x00b"}}}

    def answers(signed):
        return {(url, kind): signed.post(url, **body).status_code
                for url in ("/support/new", f"/support/{job.id}/edit", f"/support/{job.id}/archive", "/nowhere/new")
                for kind, body in bodies.items()}

    for who in (None, make_user(Role.SYSADMIN)):
        signed = login_as(who) if who else client
        got = answers(signed)
        for (url, kind), status in got.items():
            assert status == got[("/nowhere/new", kind)], f"{who and who.role}: {kind} to {url}: {status}"
        assert got[("/support/new", "no token")] == 404 and got[("/support/new", "over the site's limit")] == 413
    db.session.expire_all()
    assert db.session.get(Job, job.id).state == "active" and len(versions(job.id)) == 1


def test_a_system_administrator_uses_it_once_the_setting_names_the_role(ctx, login_as):
    job = make_script_job(SCRIPT, name="Shared script")
    sysadmin = make_user(Role.SYSADMIN)
    set_setting("support_roles", ["superadmin", "sysadmin"])
    db.session.commit()
    client = login_as(sysadmin)
    assert client.get("/support/").status_code == 200
    assert "Shared script" in client.get("/support/").get_data(as_text=True)
    assert client.get(f"/support/{job.id}").status_code == 200
    response = client.get(f"/jobs/{job.id}")  # the generic job page sends them to the support page
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/support/{job.id}")


def test_signed_in_superadmin_reaches_every_page(superadmin):
    job = make_script_job(SCRIPT, name="Reachable")
    for url in ("/support/", "/support/new", f"/support/{job.id}", f"/support/{job.id}/edit",
                f"/support/{job.id}/diff?a=1&b=1"):
        assert superadmin.get(url).status_code == 200, url
    assert superadmin.get(f"/jobs/{job.id}/edit").headers["Location"].endswith(f"/support/{job.id}/edit")


# --- the list --------------------------------------------------------------------------------

def test_the_list_shows_each_script_job(superadmin):
    robot = make_user(Role.SYSTEM, username="robot")
    live = make_script_job(SCRIPT, name="Live script", run_as=robot,
                           plan={"kind": "poll", "seconds": 15, "anchor": utcnow().isoformat()})
    live.next_fire_at = utcnow().replace(microsecond=0) + timedelta(seconds=15)
    archived = make_script_job("log('old')", name="Old script", state="archived",
                               plan={"kind": "poll", "seconds": 120, "anchor": utcnow().isoformat()})
    run = Run(job_id=live.id, trigger=Trigger.HAND, status=RunStatus.FAILED, started_at=utcnow(), finished_at=utcnow())
    db.session.add(run)
    db.session.commit()
    live.last_run_id, live.last_status = run.id, run.status
    db.session.commit()
    make_job("Ordinary job")  # not a script job: not listed here

    response = superadmin.get("/support/")
    page = page_of(response)
    rows = {row.get("id"): row for row in page.xpath('//tr[starts-with(@id, "script-")]')}
    assert set(rows) == {f"script-{live.id}", f"script-{archived.id}"}
    row = rows[f"script-{live.id}"]
    cells = [text_of(cell) for cell in row.xpath("td")]
    assert cells[0] == "Live script" and row.xpath("td[1]/a/@href") == [f"/support/{live.id}"]
    assert cells[1] == "No" and cells[2] == "robot" and cells[3] == "15"
    assert row.xpath('.//code[contains(@class, "md5")]/text()') == [script_md5(SCRIPT)]  # in full
    assert row.xpath('.//button[@data-copy]')  # the Copy button (shown by support.js)
    assert "Failed" in cells[5] and row.xpath('.//*[contains(@class, "status-failed")]')
    local = live.next_fire_at.astimezone(sync.timezone()).strftime("%Y-%m-%d %H:%M:%S")
    assert cells[6] == local
    assert row.xpath(f'.//form[@action="/support/{live.id}/run"]//button')
    old = [text_of(cell) for cell in rows[f"script-{archived.id}"].xpath("td")]
    assert old[1] == "Archived" and old[2] == "—" and old[3] == "120" and old[6] == "—"
    assert "Never run" in old[5]
    assert rows[f"script-{archived.id}"].xpath('.//code/text()') == [script_md5("log('old')")]
    assert page.xpath('//a[@href="/support/new"]')


def test_the_list_reads_a_fixed_number_of_statements(superadmin, app):
    from sqlalchemy import event

    robot = make_user(Role.SYSTEM, username="robot")

    def count_for(rows):
        for index in range(rows):
            make_script_job(f"log({index})", name=f"Script {rows}-{index}", run_as=robot)
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert superadmin.get("/support/").status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(statements)

    assert count_for(3) == count_for(20)


def test_run_now_queues_a_run_and_audits_it(superadmin):
    job = make_script_job(SCRIPT, name="Run me")
    token = token_of(superadmin, "/support/")
    response = superadmin.post(f"/support/{job.id}/run", data={"csrf_token": token})
    [run] = db.session.scalars(select(Run).where(Run.job_id == job.id)).all()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/runs/{run.id}")
    assert run.trigger == Trigger.HAND and run.requested_by_id == superadmin.user.id
    [event] = audits(job.id, "run_now")
    assert event.after["run_id"] == run.id and event.actor_name == "root"


def test_csrf_token_missing_is_refused(superadmin):
    job = make_script_job(SCRIPT, name="Guarded")
    for url in ("/support/new", f"/support/{job.id}/edit", f"/support/{job.id}/run", f"/support/{job.id}/archive"):
        data = form_data(name="Other") if url.endswith(("new", "edit")) else {}
        assert superadmin.post(url, data=data).status_code == 400, url
    assert db.session.scalar(select(Job).where(Job.name == "Other")) is None
    assert db.session.scalars(select(Run)).all() == []
    db.session.expire_all()
    assert db.session.get(Job, job.id).state == "active"


# --- add and edit ----------------------------------------------------------------------------

def test_create_saves_version_one_schedules_it_and_audits_the_md5(superadmin):
    robot = make_user(Role.SYSTEM, username="robot")
    before = utcnow().replace(microsecond=0)
    response = create(superadmin, name="  Nightly   check ", description="Looks at things", poll_seconds="30",
                      config=[("study", "A"), ("empty", ""), ("", "")], run_as_id=str(robot.id), time_limit="20")
    job = created_job(response)
    assert (job.name, job.job_type, job.scope) == ("Nightly check", "support.script", "installation")
    assert job.domain_id is None
    assert job.params == {"config": {"study": "A", "empty": ""}, "time_limit": 20}
    assert job.plan["kind"] == "poll" and job.plan["seconds"] == 30 and job.run_as_id == robot.id
    assert before <= job.next_fire_at <= utcnow() + timedelta(seconds=1)  # on its plan at once
    assert scheduled_entries() == {sync.occurrence_id(job.id): job.next_fire_at.timestamp()}
    [version] = versions(job.id)
    assert (version.number, version.script, version.md5) == (1, SCRIPT, script_md5(SCRIPT))  # LF, as shown
    assert version.saved_by_id == superadmin.user.id and version.saved_by_name == "root"
    [event] = audits(job.id)
    assert event.action == "create" and event.domain_id is None and event.actor_name == "root"
    assert event.before == {"md5": None} and event.after["md5"] == script_md5(SCRIPT)
    assert event.after["run_as"] == "robot" and event.after["params"]["config"] == {"study": "A", "empty": ""}
    page = superadmin.get(response.headers["Location"]).get_data(as_text=True)
    assert script_md5(SCRIPT) in page and "Nightly check" in page


def test_edit_of_the_script_adds_version_two_and_audits_md5_before_and_after(superadmin):
    job = created_job(create(superadmin))
    data = edit_form(superadmin, job)
    assert data["script"].replace("\r\n", "\n") == SCRIPT and data["version"] == "1"
    changed = "log('hello again')\r\n"
    response = superadmin.post(f"/support/{job.id}/edit", data={**data, "script": changed, "poll_seconds": "5"})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    first, second = versions(job.id)
    assert (second.number, second.script, second.md5) == (2, "log('hello again')\n", script_md5("log('hello again')\n"))
    [event] = audits(job.id, "edit")
    assert event.before["md5"] == first.md5 and event.after["md5"] == second.md5
    assert event.before["plan"]["seconds"] == 60 and event.after["plan"]["seconds"] == 5
    assert "script" not in event.after  # the text is in the versions, the record has its MD5
    db.session.expire_all()
    assert db.session.get(Job, job.id).version == 2


def test_a_save_without_a_script_change_adds_no_version(superadmin):
    job = created_job(create(superadmin))
    data = edit_form(superadmin, job)
    response = superadmin.post(f"/support/{job.id}/edit", data={**data, "description": "Now described"})
    assert response.status_code == 302
    assert [v.number for v in versions(job.id)] == [1]
    [event] = audits(job.id, "edit")
    assert event.before == {"description": "", "md5": script_md5(SCRIPT)}
    assert event.after == {"description": "Now described", "md5": script_md5(SCRIPT)}
    # Saving it again unchanged saves nothing at all.
    data = edit_form(superadmin, job)
    superadmin.post(f"/support/{job.id}/edit", data=data)
    assert len(audits(job.id, "edit")) == 1


def test_a_syntax_error_is_shown_with_its_line_and_nothing_is_saved(superadmin):
    response = create(superadmin, script="x = 1\r\nif x\r\n    log(x)\r\n")
    assert response.status_code == 400
    message = error_of(response, "script")
    assert "Line 2" in message and "column" in message, message
    page = page_of(response)
    assert page.get_element_by_id("name").value == "Nightly check"  # entered values kept
    assert "if x" in page.get_element_by_id("script").text_content()
    assert db.session.scalars(select(Job)).all() == [] and db.session.scalars(select(ScriptVersion)).all() == []
    assert scheduled_entries() == {}

    job = created_job(create(superadmin, name="Fine"))
    data = edit_form(superadmin, job)
    response = superadmin.post(f"/support/{job.id}/edit", data={**data, "script": "def f(:\n  pass"})
    assert response.status_code == 400 and "Line 1" in error_of(response, "script")
    assert len(versions(job.id)) == 1 and audits(job.id, "edit") == []


@pytest.mark.parametrize("fields, field, message", [
    ({"poll_seconds": "0"}, "poll_seconds", "between 1 and 300"),
    ({"poll_seconds": "301"}, "poll_seconds", "between 1 and 300"),
    ({"poll_seconds": "ten"}, "poll_seconds", "whole number"),
    ({"name": ""}, "name", "A name is required"),
    ({"name": "x" * 121}, "name", "At most 120"),
    ({"script": "   "}, "script", "A script is required"),
    ({"script": "x = 1\n" + "#" * (1024 * 1024)}, "script", "At most 1024 KiB"),
    ({"config": [("", "orphan value")]}, "config-0-key", "A key is required"),
    ({"config": [("a", "1"), ("b", "2"), ("a", "3")]}, "config-2-key", "row 1"),
    ({"config": [("k" * 101, "1")]}, "config-0-key", "At most 100"),
    ({"config": [("k", "v" * 2001)]}, "config-0-value", "At most 2000"),
    ({"time_limit": "0"}, "time_limit", "between 1 and"),
    ({"time_limit": "abc"}, "time_limit", "whole number"),
    ({"run_as_id": "999999"}, "run_as_id", "active accounts"),
    ({"run_as_id": "01"}, "run_as_id", "active accounts"),
])
def test_refused_input_is_shown_next_to_its_field(superadmin, fields, field, message):
    response = create(superadmin, **fields)
    assert response.status_code == 400
    assert message in error_of(response, field), (field, page_of(response).text_content()[:3000])
    assert db.session.scalars(select(Job)).all() == []


def test_keys_that_differ_only_in_case_width_or_an_invisible_character_are_refused(superadmin):
    """"Limit" beside "limit", a full-width "ｌｉｍｉｔ" or "limit" with a zero-width space were
    saved as four keys that read as one; the config held four values for what looks like one."""
    response = create(superadmin, config=[("limit", "1"), ("Limit", "2"), ("ｌｉｍｉｔ", "3"), ("lim\u200bit", "4"),
                                          ("mode\u202e", "5"), ("mode", "6")])
    assert response.status_code == 400
    assert "key of row 1 (“limit”) in another case or width" in error_of(response, "config-1-key")
    assert "key of row 1 (“limit”) in another case or width" in error_of(response, "config-2-key")
    assert "invisible" in error_of(response, "config-3-key") and "invisible" in error_of(response, "config-4-key")
    assert error_of(response, "config-5-key") == ""
    assert db.session.scalars(select(Job)).all() == []
    job = created_job(create(superadmin, config=[("limit", "1"), ("limit_max", "2")]))
    assert job.params["config"] == {"limit": "1", "limit_max": "2"}


def test_a_row_number_in_a_message_is_the_row_shown(superadmin):
    """Rows were counted without the blank ones: with two blank rows first, a key typed twice in
    rows 3 and 4 was told to be "already the key of row 1"."""
    response = create(superadmin, config=[("", ""), ("", ""), ("a", "1"), ("a", "2")])
    assert response.status_code == 400
    assert error_of(response, "config-3-key") == "“a” is already the key of row 3."
    keys = page_of(response).xpath('//table[@id="config-rows"]//input[contains(@name, "-key")]')
    assert [(key.get("aria-label"), key.value, key.get("aria-invalid")) for key in keys] == [
        ("Key of row 1", "", None), ("Key of row 2", "", None), ("Key of row 3", "a", None), ("Key of row 4", "a", "true")]


def test_a_taken_name_a_too_long_time_limit_and_an_inactive_run_as_user_are_refused(superadmin):
    make_job("Taken name")
    set_setting("script_time_limit", 30)
    gone = make_user(Role.SYSTEM, username="retired")
    gone.active = False
    db.session.commit()
    response = create(superadmin, name="taken NAME", time_limit="31", run_as_id=str(gone.id))
    assert response.status_code == 400
    assert "already exists" in error_of(response, "name")
    assert "between 1 and 30" in error_of(response, "time_limit")
    assert "active accounts" in error_of(response, "run_as_id")
    assert "retired" not in page_of(response).get_element_by_id("run_as_id").text_content()  # not offered
    assert created_job(create(superadmin, name="Other", time_limit="30")).params["time_limit"] == 30


def test_run_as_lists_active_users_system_accounts_first(superadmin):
    make_user(Role.DOMAIN_ADMIN, username="alice", domain=make_domain())
    make_user(Role.SYSTEM, username="zeta-robot")
    page = page_of(superadmin.get("/support/new"))
    groups = page.xpath('//select[@id="run_as_id"]/optgroup')
    assert [group.get("label") for group in groups] == ["System accounts", "People"]
    assert [o.text for o in groups[0].xpath("option")] == ["zeta-robot"]
    assert [o.text for o in groups[1].xpath("option")] == ["alice", "root"]


def test_add_row_without_javascript_shows_one_more_row_and_keeps_the_entries(superadmin):
    page = page_of(superadmin.get("/support/new"))
    assert len(page.xpath('//table[@id="config-rows"]//tr[@class="config-row"]')) == 3  # blank rows to fill in
    data = {**form_data(config=[("a", "1"), ("b", "2"), ("c", "3")]), "csrf_token": token_of(superadmin),
            "add_row": "1"}
    response = superadmin.post("/support/new", data=data)
    assert response.status_code == 200
    rows = page_of(response).xpath('//table[@id="config-rows"]//tr[@class="config-row"]')
    assert [row.xpath(".//input")[0].value for row in rows] == ["a", "b", "c", ""]
    assert db.session.scalars(select(Job)).all() == []


def test_a_save_from_a_stale_form_is_refused_and_keeps_what_was_typed(superadmin, login_as):
    job = created_job(create(superadmin))
    stale = edit_form(superadmin, job)
    fresh = edit_form(superadmin, job)
    superadmin.post(f"/support/{job.id}/edit", data={**fresh, "script": "log('theirs')"})
    response = superadmin.post(f"/support/{job.id}/edit", data={**stale, "script": "log('mine')"})
    assert response.status_code == 409
    page = page_of(response)
    assert "changed since you opened it" in text_of(page.get_element_by_id("edit-conflict"))
    assert "log('mine')" in page.get_element_by_id("script").text_content()
    assert [v.script for v in versions(job.id)][-1] == "log('theirs')"
    # Saving again is a choice made knowing the other change.
    again = page_of(response).get_element_by_id("version").value
    response = superadmin.post(f"/support/{job.id}/edit", data={**stale, "version": again, "script": "log('mine')"})
    assert response.status_code == 302 and [v.number for v in versions(job.id)] == [1, 2, 3]


def test_a_one_megabyte_script_saves(superadmin):
    big = "x = 1\n" + "# é filler line\n" * 60_000
    assert len(big.encode()) < 1024 * 1024
    job = created_job(create(superadmin, script=big))
    assert versions(job.id)[0].md5 == script_md5(big)


# --- history ---------------------------------------------------------------------------------

def test_a_two_megabyte_script_of_any_text_is_told_next_to_the_field(superadmin):
    """Two MiB of accented text is six percent-encoded: it got the 413 error page, the form and
    what was typed gone, where two MiB of ASCII got the message at the script."""
    response = create(superadmin, script="# " + "é" * (1024 * 1024) + "\n")
    assert response.status_code == 400
    assert "At most 1024 KiB" in error_of(response, "script")
    assert page_of(response).get_element_by_id("name").value == "Nightly check"
    assert db.session.scalars(select(Job)).all() == []


def test_the_job_page_shows_versions_and_the_difference_escaped(superadmin):
    job = created_job(create(superadmin, script="a = 1\nb = 2\n"))
    data = edit_form(superadmin, job)
    superadmin.post(f"/support/{job.id}/edit", data={**data, "script": "a = 1\nb = '<script>alert(1)</script>'\n"})
    page = superadmin.get(f"/support/{job.id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    tree = page_of(page)
    rows = tree.xpath('//tr[starts-with(@id, "version-")]')
    assert [row.get("id") for row in rows] == ["version-2", "version-1"]
    assert all("root" in text_of(row) for row in rows)
    assert rows[0].xpath(".//code/text()") == [script_md5("a = 1\nb = '<script>alert(1)</script>'\n")]

    fragment = superadmin.get(f"/support/{job.id}/diff?a=1&b=2", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    text = fragment.get_data(as_text=True)
    assert "<html" not in text and "<script>alert" not in text
    diff = page_of(fragment)
    assert [text_of(n) for n in diff.xpath('//*[@class="diff-del"]')] == ["removed: -b = 2"]
    assert [text_of(n) for n in diff.xpath('//*[@class="diff-add"]')] == ["added: +b = '<script>alert(1)</script>'"]
    # Without HTMX the same address is the whole page with the difference.
    whole = superadmin.get(f"/support/{job.id}/diff?a=2&b=1")
    assert whole.status_code == 200 and page_of(whole).xpath('//*[@class="diff-del"]')


@pytest.mark.parametrize("query", ["a=1&b=9", "a=0&b=1", "a=x&b=1", "a=99999999999&b=1", "", "a=1",
                                   "a=%D9%A3&b=1", "a=1&b=-1"])
def test_versions_out_of_range_are_a_message_not_an_error(superadmin, query):
    job = make_script_job(SCRIPT, name="Versioned")
    fragment = superadmin.get(f"/support/{job.id}/diff?{query}", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "no script version" in fragment.get_data(as_text=True)
    assert superadmin.get(f"/support/{job.id}/diff?{query}").status_code == 404


def test_hostile_ids_are_404(superadmin):
    other = make_job("Not a script")
    for url in (f"/support/{other.id}", f"/support/{other.id}/edit", "/support/0", "/support/01",
                "/support/99999999999", "/support/-1", "/support/%D9%A3", "/support/1.5/edit"):
        assert superadmin.get(url).status_code == 404, url
    token = token_of(superadmin, "/support/")
    for action in ("run", "archive", "restore", "edit"):
        assert superadmin.post(f"/support/{other.id}/{action}", data={"csrf_token": token}).status_code == 404
    deleted = make_script_job(SCRIPT, name="Deleted script", deleted_at=utcnow())
    assert superadmin.get(f"/support/{deleted.id}").status_code == 404


# --- archive and restore ---------------------------------------------------------------------

def test_archive_takes_it_off_the_schedule_and_restore_puts_it_back(superadmin):
    job = created_job(create(superadmin, poll_seconds="10"))
    assert sync.occurrence_id(job.id) in scheduled_entries()
    token = token_of(superadmin, f"/support/{job.id}")
    page = page_of(superadmin.get(f"/support/{job.id}"))
    assert "Archive" in page.xpath(f'//form[@action="/support/{job.id}/archive"]/@data-confirm')[0]

    response = superadmin.post(f"/support/{job.id}/archive", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.state, job.next_fire_at) == ("archived", None)
    assert scheduled_entries() == {}
    [event] = audits(job.id, "archive")
    md5 = script_md5(SCRIPT)
    assert event.before["md5"] == event.after["md5"] == md5
    assert event.before["state"] == "active" and event.after == {"state": "archived", "next_fire_at": None, "md5": md5}
    listed = page_of(superadmin.get("/support/")).get_element_by_id(f"script-{job.id}")
    assert "Archived" in text_of(listed)  # still listed, marked
    assert superadmin.post(f"/support/{job.id}/run", data={"csrf_token": token}).status_code == 302
    assert db.session.scalars(select(Run)).all() == []  # an archived script is not run by hand either

    before = utcnow().replace(microsecond=0)
    superadmin.post(f"/support/{job.id}/restore", data={"csrf_token": token})
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.state == "active" and before <= job.next_fire_at <= before + timedelta(seconds=11)
    assert scheduled_entries() == {sync.occurrence_id(job.id): job.next_fire_at.timestamp()}
    [event] = audits(job.id, "restore")
    assert event.before["md5"] == event.after["md5"] == md5 and event.after["state"] == "active"


def test_the_archived_check_box_on_edit_archives_it(superadmin):
    job = created_job(create(superadmin))
    data = edit_form(superadmin, job)
    response = superadmin.post(f"/support/{job.id}/edit", data={**data, "archived": "y"})
    assert response.status_code == 302
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.state, job.next_fire_at) == ("archived", None) and scheduled_entries() == {}
    [event] = audits(job.id, "archive")
    assert event.before["md5"] == event.after["md5"] == script_md5(SCRIPT)
    data = edit_form(superadmin, job)
    assert data.get("archived") == "y"
    superadmin.post(f"/support/{job.id}/edit", data={k: v for k, v in data.items() if k != "archived"})
    db.session.expire_all()
    assert db.session.get(Job, job.id).next_fire_at is not None and len(scheduled_entries()) == 1


# --- script jobs stay out of everyone else's view ----------------------------------------------

def test_a_domain_administrator_never_sees_a_script_job_or_its_runs(ctx, app, login_as):
    study = make_domain("Study A")
    admin = make_user(Role.DOMAIN_ADMIN, domain=study, username="domain-admin")
    # A script job in the admin's own domain, and one by installation: both hidden.
    in_domain = make_script_job(SCRIPT, name="Secret script in domain", domain=study)
    installation = make_script_job(SCRIPT, name="Secret script job")
    visible = make_job("Visible job", domain=study)
    runs = []
    for job in (in_domain, installation, visible):
        run = Run(job_id=job.id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED, started_at=utcnow(),
                  finished_at=utcnow(), message=f"finished {job.name}")
        db.session.add(run)
        db.session.flush()
        job.last_run_id, job.last_status = run.id, run.status
        runs.append(run)
        from webapp.models.audit import record
        record("edit", "job", job, actor=None, after={"md5": "x"})
    db.session.commit()
    _, plain = ApiToken.issue(admin, "test")
    db.session.commit()

    client = login_as(admin)
    secret_names = ("Secret script in domain", "Secret script job")
    for url in ("/jobs/", "/executions/", "/queues/", "/", "/dashboard/", "/audit/", "/archive/",
                "/jobs/?sort=status", "/executions/?status=succeeded"):
        response = client.get(url, follow_redirects=True)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        for name in secret_names:
            assert name not in body, f"{url} shows {name}"
    assert "Visible job" in client.get("/jobs/").get_data(as_text=True)  # the check can fail
    for job, run in zip((in_domain, installation), runs):
        assert client.get(f"/jobs/{job.id}").status_code == 404
        assert client.get(f"/runs/{run.id}").status_code == 404

    api = app.test_client()
    headers = {"Authorization": f"Bearer {plain}"}
    listed = api.get("/api/scheduled-jobs", headers=headers)
    assert listed.status_code == 200
    assert "Visible job" in listed.get_data(as_text=True)
    for name in secret_names:
        assert name not in listed.get_data(as_text=True)
    for job, run in zip((in_domain, installation), runs):
        assert api.get(f"/api/scheduled-jobs/{job.id}", headers=headers).status_code == 404
        assert api.get(f"/api/scheduled-jobs/{job.id}/runs", headers=headers).status_code == 404
        assert api.get(f"/api/scheduled-jobs/{job.id}/runs/{run.id}", headers=headers).status_code == 404
