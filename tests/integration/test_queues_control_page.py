"""Pause, resume, clear and pause on failure as the queues page, the dashboard and `flask queues`
offer them: who sees the controls, what each does (state, message, audit record), what anybody
else gets (404), bad input, and what the waiting list says each run waits for."""
import re

import pytest
from sqlalchemy import func, select

from tests.factories import csrf_from, make_job, make_user
from tests.integration.test_queues import _quick_password_hashes, _run, estate  # noqa: F401  (fixtures)
from tests.jobtypes import SERIAL_QUEUE
from webapp.execution import dispatch, queues
from webapp.extensions import db
from webapp.models import AuditEvent, QueueState, Role, Run, RunStatus

HTMX_STATE = {"HX-Request": "true", "HX-Target": "qs-default"}


def _text(response) -> str:
    return response.get_data(as_text=True)


def _panel(page: str, queue: str = "default") -> str:
    return page.split(f'id="queue-{queue}"')[1].split("<section", 1)[0]


def _head(page: str, queue: str = "default") -> str:
    return page.split(f'id="qs-{queue}"')[1].split('class="queue-list', 1)[0]


def _waiting(page: str, queue: str = "default") -> list[str]:
    part = page.split(f'id="q-{queue}-waiting"')[1].split(f'id="q-{queue}-planned"')[0]
    return part.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]


def _post(client, url, **data):
    token = csrf_from(client.get("/queues/"))
    return client.post(url, data={"csrf_token": token, **data}, headers={"Referer": "http://localhost/queues/"})


def _pages_as(app, username, *paths) -> list[str]:
    """The pages as another user sees them: a client of its own, in an app context of its own (the
    test's context would keep the signed-in user of the test's client)."""
    with app.app_context():
        client = app.test_client()
        response = client.post("/login", data={"username": username, "password": "pw",
                                               "csrf_token": csrf_from(client.get("/login"))})
        assert response.status_code == 302
        return [_text(client.get(path)) for path in paths]


def _audits(action):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "queue", AuditEvent.action == action)
                              .order_by(AuditEvent.id)).all()


def _state(name="default") -> QueueState | None:
    db.session.expire_all()
    return queues.state(name)


# ---------------------------------------------------------------- who sees what

@pytest.mark.parametrize("who, steers", [("root", True), ("sys", True), ("admin_a", False), ("admin_b", False)])
def test_the_controls_are_for_superadmins_and_system_administrators(estate, login_as, who, steers):
    page = _text(login_as(estate["users"][who]).get("/queues/"))
    head = _head(page)
    assert "<strong>Running</strong>" in head
    assert "Pause on failure: <strong>off</strong>" in head  # the setting is shown to everyone
    controls = ('action="/queues/default/pause"', 'action="/queues/default/resume"',
                'action="/queues/default/clear"', 'action="/queues/default/pause-on-failure"')
    if steers:
        for control in controls[:1] + controls[2:]:
            assert control in head, control
        assert 'Pause<span class="sr-only"> queue default</span>' in head
        assert 'name="reason" maxlength="500"' in head
        assert "data-confirm=\"Pause queue default?" in head and "data-confirm=\"Clear queue default?" in head
        assert "Clear<span" not in _head(page, "mail")  # the mail queue carries no runs to clear or fail
        assert "Pause on failure" not in _head(page, "mail")
    else:
        assert not any(control in page for control in controls)
        assert "Turn on" not in page


def test_a_serial_queue_is_marked_so(estate, login_as):
    page = _text(login_as(estate["users"]["admin_a"]).get("/queues/"))
    assert ">Serial</span>" in _head(page, SERIAL_QUEUE)
    assert ">Serial</span>" not in _head(page, "default")


# ---------------------------------------------------------------- what the actions do

def test_pause_and_resume_by_a_system_administrator(estate, login_as):
    client = login_as(estate["users"]["sys"])
    response = _post(client, "/queues/default/pause", reason="  Database   upgrade tonight ")
    assert response.status_code == 302 and response.headers["Location"] == "/queues/#queue-default"
    page = _text(client.get("/queues/"))
    assert "Queue default is paused: runs in progress finish, nothing new starts." in page
    head = _head(page)
    assert re.search(r"<strong>Paused</strong> by sys at \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?: Database upgrade tonight", head)
    assert 'action="/queues/default/resume"' in head and 'action="/queues/default/pause"' not in head
    assert "data-confirm=\"Resume queue default?" in head
    row = _state()
    assert row.paused and row.paused_by_name == "sys" and row.reason == "Database upgrade tonight"
    (audit,) = _audits("pause")
    assert (audit.actor_name, audit.object_name, audit.after) == ("sys", "default", {"reason": "Database upgrade tonight"})

    again = _post(client, "/queues/default/pause")
    assert again.status_code == 302
    assert "Queue default was already paused." in _text(client.get("/queues/"))
    assert len(_audits("pause")) == 1

    assert _post(client, "/queues/default/resume").status_code == 302
    page = _text(client.get("/queues/"))
    assert "Queue default is running again." in page and "<strong>Running</strong>" in _head(page)
    assert not _state().paused and [a.actor_name for a in _audits("resume")] == ["sys"]


def test_clear_cancels_the_waiting_runs_the_running_ones_go_on(estate, login_as):
    client = login_as(estate["users"]["root"])
    response = _post(client, "/queues/default/clear")
    assert response.status_code == 302
    assert "Queue default is cleared: 2 waiting runs cancelled." in _text(client.get("/queues/"))
    ids = estate["ids"]
    statuses = dict(db.session.execute(select(Run.id, Run.status).where(Run.id.in_(ids.values()))).all())
    assert statuses[ids["a_waiting"]] == statuses[ids["b_waiting"]] == RunStatus.CANCELLED
    assert statuses[ids["a_running"]] == statuses[ids["b_running"]] == RunStatus.IN_PROGRESS
    (audit,) = _audits("clear")
    assert (audit.actor_name, audit.after) == ("root", {"cancelled": 2})
    _post(client, "/queues/default/clear")
    assert "Queue default had no waiting run: nothing cancelled." in _text(client.get("/queues/"))


def test_pause_on_failure_is_turned_on_and_off_by_a_manager_and_shown_to_all(estate, login_as, app):
    client = login_as(estate["users"]["root"])
    _post(client, "/queues/default/pause-on-failure", on="on")
    assert _state().pause_on_failure is True
    page = _text(client.get("/queues/"))
    assert "Pause on failure is on for queue default." in page
    assert "Pause on failure: <strong>on</strong>" in _head(page) and "Turn off<span" in _head(page)
    (audit,) = _audits("update")
    assert (audit.actor_name, audit.before, audit.after) == ("root", {"pause_on_failure": False},
                                                             {"pause_on_failure": True})
    odd = _post(client, "/queues/default/pause-on-failure", on="maybe")
    assert odd.status_code == 302
    assert "Pause on failure is either on or off: nothing changed." in _text(client.get("/queues/"))
    assert _state().pause_on_failure is True
    (other_page,) = _pages_as(app, "admin-a", "/queues/")
    assert "Pause on failure: <strong>on</strong>" in _head(other_page) and "Turn off" not in other_page


@pytest.mark.parametrize("who", ["admin_a", "admin_b"])
def test_a_domain_administrator_gets_404_and_nothing_changes(estate, login_as, who):
    client = login_as(estate["users"][who])
    for action, data in (("pause", {"reason": "x"}), ("resume", {}), ("clear", {}), ("pause-on-failure", {"on": "on"})):
        assert _post(client, f"/queues/default/{action}", **data).status_code == 404, action
    assert db.session.scalar(select(func.count()).select_from(QueueState)) == 0
    assert not _audits("pause") and not _audits("clear")
    assert db.session.get(Run, estate["ids"]["a_waiting"]).status == RunStatus.QUEUED


def test_unknown_odd_and_over_long_queue_names_are_404_and_nul_is_400(estate, login_as):
    client = login_as(estate["users"]["root"])
    for name in ("nope", "Default", "default%20", "d" * 65, "%2e%2e", "٣"):
        for action in ("pause", "resume", "clear", "pause-on-failure"):
            assert _post(client, f"/queues/{name}/{action}").status_code == 404, (name, action)
    assert _post(client, "/queues/default%00/pause").status_code == 400
    assert db.session.scalar(select(func.count()).select_from(QueueState)) == 0


def test_every_action_needs_the_csrf_token(estate, login_as):
    client = login_as(estate["users"]["root"])
    client.get("/queues/")
    for action in ("pause", "resume", "clear", "pause-on-failure"):
        response = client.post(f"/queues/default/{action}", data={"reason": "no token", "on": "on"})
        assert response.status_code == 400, action
    assert db.session.scalar(select(func.count()).select_from(QueueState)) == 0
    assert db.session.get(Run, estate["ids"]["a_waiting"]).status == RunStatus.QUEUED


def test_signed_out_visitors_are_sent_to_sign_in(estate, client):
    token = csrf_from(client.get("/login"))
    response = client.post("/queues/default/pause", data={"csrf_token": token})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# ---------------------------------------------------------------- the reason as text

def test_a_reason_is_text_on_the_page_and_the_dashboard(estate, login_as):
    client = login_as(estate["users"]["root"])
    _post(client, "/queues/default/pause", reason='<script>alert("x")</script> & <b>bold</b>')
    for page in (_text(client.get("/queues/")), _text(client.get("/dashboard/"))):
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
        assert "<script>alert" not in page and "<b>bold" not in page


def test_an_over_long_reason_is_refused_next_to_the_field(estate, login_as):
    client = login_as(estate["users"]["root"])
    response = _post(client, "/queues/default/pause", reason="r" * 501)
    assert response.status_code == 400
    head = _head(_text(response))
    assert "The reason is 501 characters long: keep it to 500 at most." in head
    assert 'aria-invalid="true" aria-describedby="qs-default-reason-error"' in head and 'value="' + "r" * 501 in head
    assert "hx-trigger" not in head.split(">", 1)[0]  # no poll replaces the message and the reason typed
    assert _state() is None
    assert _post(client, "/queues/default/pause", reason="r" * 500).status_code == 302
    assert _state().reason == "r" * 500


def test_a_pause_on_failure_shows_the_failed_run_to_those_who_may_see_it(estate, login_as, app):
    run = db.session.get(Run, estate["ids"]["b_running"])
    queues.pause("default", None, f"Run #{run.id} of Import B failed: No such file /srv/firetime/data/in.csv",
                 failed_run=run)
    seen = {}
    for who in ("root", "sys", "admin_a", "admin_b"):
        page, dashboard = _pages_as(app, estate["users"][who].username, "/queues/", "/dashboard/")
        seen[who] = (_head(page), dashboard)
    link = f'href="/runs/{run.id}" data-log-popup="{run.id}">See run #{run.id}</a>'
    head, dashboard = seen["root"]
    assert f"<strong>Paused</strong> by system at" in head
    assert f"Run #{run.id} of Import B failed: No such file /srv/firetime/data/in.csv" in head and link in head
    assert link in dashboard and "Queue default</a></strong> is paused by system" in dashboard
    head, dashboard = seen["admin_b"]  # its own domain's run: the error, without server paths
    assert f"Run #{run.id} of Import B failed: No such file …/in.csv" in head and link in head
    for who in ("admin_a", "sys"):  # another domain's run (the sysadmin supervises no domain here)
        head, dashboard = seen[who]
        assert "A run of another domain failed." in head and "Import B" not in head and link not in head
        assert "A run of another domain failed." in dashboard and "Import B" not in dashboard


def test_the_head_of_a_panel_is_its_own_fragment(estate, login_as):
    client = login_as(estate["users"]["root"])
    fragment = client.get("/queues/?queue=default", headers=HTMX_STATE)
    body = _text(fragment)
    assert fragment.status_code == 200 and "<html" not in body and body.lstrip().startswith('<div id="qs-default"')
    assert 'hx-trigger="every 5s"' in body and "data-queue-poll" in body
    queues.pause("default", estate["users"]["sys"], "now")
    assert "<strong>Paused</strong> by sys" in _text(client.get("/queues/?queue=default", headers=HTMX_STATE))
    assert client.get("/queues/?queue=nope", headers={"HX-Request": "true", "HX-Target": "qs-nope"}).status_code == 404


# ---------------------------------------------------------------- the dashboard

def test_the_dashboard_names_each_paused_queue_and_nothing_when_none_is(estate, login_as):
    client = login_as(estate["users"]["admin_a"])
    page = _text(client.get("/dashboard/"))
    assert '<div id="dashboard-paused">' in page and "is paused by" not in page
    queues.pause("default", estate["users"]["sys"], "Disk full")
    queues.pause(SERIAL_QUEUE, estate["users"]["root"])
    page = _text(client.get("/dashboard/"))
    notice = page.split('id="dashboard-paused"')[1].split('id="dashboard-live"')[0]
    assert re.search(r'<a href="/queues/#queue-default">Queue default</a></strong> is paused by sys since '
                     r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?: Disk full", notice)
    assert re.search(rf"Queue {SERIAL_QUEUE}</a></strong> is paused by root since [^<]+\.", notice)
    # The live panel's answer carries the notice out of band, so a polling dashboard shows a pause.
    live = _text(client.get("/dashboard/live", headers={"HX-Request": "true"}))
    assert '<div id="dashboard-paused" hx-swap-oob="true">' in live and "Disk full" in live
    queues.resume("default")
    queues.resume(SERIAL_QUEUE)
    live = _text(client.get("/dashboard/live", headers={"HX-Request": "true"}))
    assert '<div id="dashboard-paused" hx-swap-oob="true">' in live and "is paused by" not in live


# ---------------------------------------------------------------- what each waiting run waits for

def test_waiting_runs_say_the_queue_is_paused_and_the_filter_follows(estate, login_as):
    client = login_as(estate["users"]["root"])
    handed = dispatch.request_run(make_job("Handed over"))
    assert handed.enqueued_at is not None
    ids = estate["ids"]
    rows = _waiting(_text(client.get("/queues/")))
    text = {run_id: next(row for row in rows if f">#{run_id}<" in row) for run_id in (ids["a_waiting"], handed.id)}
    assert "A free worker (position 1)" in text[handed.id]
    assert f'Run <a href="/runs/{ids["a_running"]}">#{ids["a_running"]}</a> of the same job' in text[ids["a_waiting"]]

    queues.pause("default", estate["users"]["root"])
    rows = _waiting(_text(client.get("/queues/")))
    assert len(rows) == 3 and all("The queue is paused" in row for row in rows)
    by_filter = {}
    for choice in ("paused", "worker", "run", "serial"):
        page = _text(client.get(f"/queues/?queue=default&list=waiting&f_waits={choice}"))
        by_filter[choice] = [row for row in _waiting(page) if 'class="empty"' not in row]
    assert len(by_filter["paused"]) == 3 and not by_filter["worker"] and not by_filter["run"] and not by_filter["serial"]
    fragment = _text(client.get("/queues/?queue=default&list=waiting&f_waits=paused",
                                headers={"HX-Request": "true", "HX-Target": "q-default-waiting"}))
    assert '<option value="paused" selected>The queue is paused</option>' in fragment
    assert len([row for row in _waiting(fragment) if "The queue is paused" in row]) == 3

    queues.resume("default")
    page = _text(client.get("/queues/?queue=default&list=waiting&f_waits=run"))
    rows = [row for row in _waiting(page) if 'class="empty"' not in row]
    assert {row.split('data-log-popup="')[1].split('"')[0] for row in rows} == {str(ids["a_waiting"]),
                                                                               str(ids["b_waiting"])}
    bad = _text(client.get("/queues/?queue=default&list=waiting&f_waits=bogus"))
    assert "Waits for: pick one of the reasons offered: ignored." in bad


def test_runs_on_a_serial_queue_wait_for_their_turn_behind_the_run_ahead(estate, login_as):
    client = login_as(estate["users"]["root"])
    first, second, third = (dispatch.request_run(make_job(f"Step {n}", job_type="tests.serial_step", params={}))
                            for n in (1, 2, 3))
    assert first.enqueued_at is not None and second.enqueued_at is None  # one at a time on the queue
    page = _text(client.get(f"/queues/?queue={SERIAL_QUEUE}&list=waiting&sort=run"))
    rows = _waiting(page, SERIAL_QUEUE)
    assert f">#{first.id}<" in rows[0] and "A free worker (position 1)" in rows[0]
    assert f">#{second.id}<" in rows[1] and \
        f'Its turn on the serial queue (behind run <a href="/runs/{first.id}">#{first.id}</a>)' in rows[1]
    assert f">#{third.id}<" in rows[2] and \
        f'Its turn on the serial queue (behind run <a href="/runs/{second.id}">#{second.id}</a>)' in rows[2]
    assert "<td>2</td>" in rows[1] and "<td>3</td>" in rows[2]  # their places in the line
    serial = _text(client.get(f"/queues/?queue={SERIAL_QUEUE}&list=waiting&f_waits=serial"))
    shown = [row for row in _waiting(serial, SERIAL_QUEUE) if 'class="empty"' not in row]
    assert len(shown) == 2 and f'data-log-popup="{first.id}"' not in "".join(shown)
    worker = _text(client.get(f"/queues/?queue={SERIAL_QUEUE}&list=waiting&f_waits=worker"))
    shown = [row for row in _waiting(worker, SERIAL_QUEUE) if 'class="empty"' not in row]
    assert len(shown) == 1 and f">#{first.id}<" in shown[0]


# ---------------------------------------------------------------- the command line

def _cli(ctx, *args, **kwargs):
    return ctx.test_cli_runner().invoke(args=["queues", *args], **kwargs)


def test_cli_pause_show_resume(ctx):
    paused = _cli(ctx, "pause", "default", "--reason", "Nightly backup")
    assert paused.exit_code == 0, paused.output
    assert paused.output.strip() == "Queue default is paused: runs in progress finish, nothing new starts."
    row = _state()
    assert row.paused_by_name == "system" and row.reason == "Nightly backup"
    (audit,) = _audits("pause")
    assert audit.actor_name == "system" and audit.actor_id is None
    again = _cli(ctx, "pause", "default")
    assert again.exit_code == 0 and "already paused" in again.output

    shown = _cli(ctx, "show")
    lines = shown.output.splitlines()
    default = next(i for i, line in enumerate(lines) if line.startswith("default "))
    assert "paused" in lines[default] and "pause-on-failure=off" in lines[default] and "serial=no" in lines[default]
    assert re.search(r"paused by system at \S+ \S+: Nightly backup$", lines[default + 1])
    serial = next(line for line in lines if line.startswith(SERIAL_QUEUE))
    assert "running" in serial and "serial=yes" in serial

    resumed = _cli(ctx, "resume", "default")
    assert resumed.exit_code == 0 and "Queue default is running again." in resumed.output
    assert not _state().paused
    assert "was not paused" in _cli(ctx, "resume", "default").output


def test_cli_acts_as_a_named_manager(ctx):
    make_user(Role.SYSADMIN, username="ops")
    make_user(Role.DOMAIN_ADMIN, username="site-admin")
    result = _cli(ctx, "pause", "default", "--as", "ops")
    assert result.exit_code == 0 and _state().paused_by_name == "ops"
    assert _audits("pause")[0].actor_name == "ops"
    refused = _cli(ctx, "resume", "default", "--as", "site-admin")
    assert refused.exit_code == 2 and "'site-admin' is no active superadmin or system administrator" in refused.stderr
    assert _state().paused
    assert _cli(ctx, "resume", "default", "--as", "nobody").exit_code == 2


def test_cli_unknown_queue_and_bad_input_exit_2_on_stderr(ctx):
    for args in (("pause", "nope"), ("resume", "nope"), ("clear", "nope", "--yes"), ("pause-on-failure", "nope", "on")):
        result = _cli(ctx, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "There is no queue named 'nope'." in result.stderr and "The queues are: default" in result.stderr
        assert result.stdout == ""
    assert _cli(ctx, "pause-on-failure", "default", "maybe").exit_code == 2
    too_long = _cli(ctx, "pause", "default", "--reason", "x" * 501)
    assert too_long.exit_code == 2 and "keep it to 500 at most" in too_long.stderr
    assert db.session.scalar(select(func.count()).select_from(QueueState)) == 0


def test_cli_clear_needs_yes_without_a_terminal(ctx):
    waiting = [dispatch.request_run(make_job()) for _ in range(2)]
    refused = _cli(ctx, "clear", "default")  # the test runner's stdin is no terminal
    assert refused.exit_code == 2
    assert "there is no terminal to ask on: add --yes to clear it. Nothing was cancelled." in refused.stderr
    assert all(db.session.get(Run, run.id).status == RunStatus.QUEUED for run in waiting)
    cleared = _cli(ctx, "clear", "default", "--yes")
    assert cleared.exit_code == 0 and "Queue default is cleared: 2 waiting runs cancelled." in cleared.output
    db.session.expire_all()
    assert all(db.session.get(Run, run.id).status == RunStatus.CANCELLED for run in waiting)
    assert [audit.actor_name for audit in _audits("clear")] == ["system"]


def test_cli_pause_on_failure(ctx):
    result = _cli(ctx, "pause-on-failure", "default", "ON")
    assert result.exit_code == 0 and result.output.strip() == "Pause on failure is on for queue default."
    assert _state().pause_on_failure is True
    assert "pause-on-failure=on" in next(line for line in _cli(ctx, "show").output.splitlines()
                                         if line.startswith("default "))
    assert "already on" in _cli(ctx, "pause-on-failure", "default", "on").output
    assert _cli(ctx, "pause-on-failure", "default", "off").exit_code == 0 and _state().pause_on_failure is False


def test_cli_clear_on_a_terminal_asks_first(ctx, monkeypatch):
    from types import SimpleNamespace

    import webapp.cli.commands

    monkeypatch.setattr(webapp.cli.commands, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    waiting = dispatch.request_run(make_job())
    declined = _cli(ctx, "clear", "default", input="n\n")
    assert declined.exit_code == 1 and "Cancel every run waiting on queue default" in declined.output
    assert "Nothing was cancelled." in declined.output
    assert db.session.get(Run, waiting.id).status == RunStatus.QUEUED
    accepted = _cli(ctx, "clear", "default", input="y\n")
    assert accepted.exit_code == 0 and "Queue default is cleared: 1 waiting run cancelled." in accepted.output
