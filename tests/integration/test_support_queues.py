"""The scripts queue on the queues page: only the support roles see it, its controls and its runs;
to anyone else the queue does not exist (404 on its controls and fragments), and the workers panel
does not tell them which script run a worker is busy with."""
from tests.conftest import wait_for
from tests.factories import csrf_from, make_domain, make_script_job, make_user
from webapp.execution import dispatch, lifecycle
from webapp.extensions import db
from webapp.models import Role, Run, RunStatus
from webapp.models.settings import set_setting


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_only_the_support_roles_see_the_scripts_queue(ctx, client, login_as):
    study = make_domain("Study")
    sysadmin = make_user(Role.SYSADMIN, supervised=[study], username="sys")
    login_as(sysadmin)
    page = _text(client.get("/queues/"))
    assert 'id="queue-default"' in page and 'id="queue-scripts"' not in page
    token = csrf_from(client.get("/queues/"))
    for action in ("pause", "resume", "clear", "pause-on-failure"):
        response = client.post(f"/queues/scripts/{action}", data={"csrf_token": token, "on": "on"})
        assert response.status_code == 404, action
    assert client.get("/queues/?queue=scripts&list=waiting",
                      headers={"HX-Request": "true", "HX-Target": "q-scripts-waiting"}).status_code == 404
    assert client.get("/queues/?queue=scripts", headers={"HX-Request": "true",
                                                         "HX-Target": "qs-scripts"}).status_code == 404

    set_setting("support_roles", ["superadmin", "sysadmin"])
    db.session.commit()
    assert 'id="queue-scripts"' in _text(client.get("/queues/"))
    token = csrf_from(client.get("/queues/"))
    response = client.post("/queues/scripts/pause", data={"csrf_token": token, "reason": "support work"})
    assert response.status_code == 302


def test_the_scripts_type_reads_as_unknown_on_the_jobs_list_of_those_who_may_not_see_it(ctx, client, login_as):
    make_script_job("log('x')", name="Hidden script", config={"secret": "value"})
    sysadmin = make_user(Role.SYSADMIN, username="sys")
    login_as(sysadmin)
    page = _text(client.get("/jobs/?type=support.script"))
    assert "Hidden script" not in page and "Support script" not in page
    assert "Configuration" not in page and "Time limit" not in page  # the type's own columns


def test_the_workers_panel_hides_a_script_run_from_a_domain_administrator(ctx, app, client, login_as, worker):
    study = make_domain("Study")
    set_setting("script_time_limit", 60)
    db.session.commit()
    job = make_script_job("import time\nlog('started')\ntime.sleep(30)")
    run_id = dispatch.request_run(job).id

    def started():
        db.session.expire_all()
        return db.session.get(Run, run_id).status == RunStatus.IN_PROGRESS

    wait_for(started, 30, message="the script run to start")
    admin = make_user(Role.DOMAIN_ADMIN, domain=study, username="study-admin")
    login_as(admin)
    panel = _text(client.get("/queues/workers"))
    # The scripts worker serves hidden queues only: it is left out (its counts are of script runs).
    assert f"#{run_id}" not in panel and "scripts" not in panel
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/queues/"))})
    root = make_user(Role.SUPERADMIN, username="root")
    login_as(root)
    assert f"#{run_id}" in _text(client.get("/queues/workers"))
    lifecycle.cancel_run(db.session.get(Run, run_id), root)  # the worker kills the script at once
