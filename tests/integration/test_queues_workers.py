"""The workers panel of the queues page and `flask queues show`, with a real worker; a worker gone
silent shows as lost; Redis down is said, never a 500."""
import time
import socket
from datetime import timedelta

import pytest
import redis as redis_lib
from rq import Worker

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Role, Run, RunStatus
from webapp.models.types import utcnow


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr("webapp.models.accounts.generate_password_hash",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


def _workers_panel(client) -> str:
    return client.get("/queues/workers").get_data(as_text=True)


def test_a_real_worker_with_its_current_run_on_the_page_and_in_the_cli(ctx, login_as, worker, redis_server):
    conn = redis_lib.Redis.from_url(redis_server.url)
    (found,) = Worker.all(connection=conn)
    client = login_as(make_user(Role.SUPERADMIN))
    idle = _workers_panel(client)
    assert found.name in idle and socket.gethostname() in idle and f">{found.pid}<" in idle
    assert "default" in idle and "system" in idle and "idle" in idle

    job = make_job("Slow self-test", params={"duration": 3, "lines_per_second": 2})
    run = dispatch.request_run(job)
    wait_for(lambda: f'href="/runs/{run.id}">#{run.id}</a>' in _workers_panel(client), 15, message="current run shown")
    busy = _workers_panel(client)
    assert "busy" in busy
    shown = ctx.test_cli_runner().invoke(args=["queues", "show"])
    assert shown.exit_code == 0, shown.output
    assert "default" in shown.output and f"worker {found.name} " in shown.output
    assert f"current=run #{run.id}" in shown.output and f"pid={found.pid}" in shown.output

    def done():
        db.session.expire_all()
        return db.session.get(Run, run.id).status == RunStatus.SUCCEEDED
    wait_for(done, 20, message="run done")
    wait_for(lambda: "<td>1</td><td>0</td>" in _workers_panel(client), 10, message="one run done, none failed")
    page = client.get("/queues/").get_data(as_text=True)
    assert found.name in page  # the panel is on the page too
    assert "No worker serves this queue" not in page  # this worker serves them all


def test_a_silent_worker_shows_as_lost(ctx, login_as, redis_server, app):
    conn = redis_lib.Redis.from_url(redis_server.url)
    ghost = Worker(["default"], connection=conn, name="ghost-worker")
    ghost.register_birth()
    try:
        silent_since = utcnow() - timedelta(seconds=app.config["RUN_DEAD_AFTER"] + 30)
        conn.hset(ghost.key, "last_heartbeat", silent_since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        client = login_as(make_user(Role.SYSADMIN))
        panel = _workers_panel(client)
        row = panel.split("ghost-worker")[1].split("</tr>")[0]
        assert "Lost" in row
        shown = ctx.test_cli_runner().invoke(args=["queues", "show"])
        assert "worker ghost-worker " in shown.output and "state=lost" in shown.output
        page = client.get("/queues/").get_data(as_text=True)
        default = page.split('id="queue-default"')[1].split("<section", 1)[0]
        assert "No worker serves this queue" in default  # a lost worker serves nothing
    finally:
        ghost.register_death()
        conn.srem("rq:workers", ghost.key)
        conn.delete(ghost.key)


def test_redis_down_is_said_not_a_500(ctx, login_as, redis_server):
    client = login_as(make_user(Role.SUPERADMIN))
    job = make_job("Somewhere")
    now = utcnow()
    db.session.add(Run(job_id=job.id, trigger="hand", status=RunStatus.IN_PROGRESS, created_at=now, enqueued_at=now,
                       started_at=now, progress=35, progress_message="Halfway there"))
    db.session.commit()
    redis_server.stop()
    try:
        page = client.get("/queues/")
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert "Redis does not answer: the workers cannot be listed now" in text
        assert "Redis does not answer: progress as last saved" in text and "35 % · Halfway there" in text
        shown = ctx.test_cli_runner().invoke(args=["queues", "show"])
        assert shown.exit_code == 1 and "Redis does not answer" in shown.output
    finally:
        redis_server.start()


def test_an_idle_worker_keeps_beating_and_is_never_taken_for_lost(ctx, worker, app):
    from webapp.queues.queries import workers

    dead_after = app.config["RUN_DEAD_AFTER"]
    time.sleep(dead_after + 2)  # idle all along: no job came
    [row] = workers()
    assert not row.lost and row.state == "idle", row
