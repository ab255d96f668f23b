"""Redis restarted empty while people work: nothing lost, nothing stuck, no error pages."""
import time
from datetime import timedelta

from flask import g

from tests.conftest import wait_for
from tests.factories import csrf_from, make_job, make_user
from tests.integration.test_engine import final
from webapp.extensions import db
from webapp.models import Run, RunStatus
from webapp.scheduling import sync


def test_run_now_during_a_redis_outage_runs_once_redis_is_back(ctx, client, login_as, redis_server,
                                                                 worker, start_process):
    admin = make_user()
    login_as(admin)
    # The test's requests share its app context, and with it Flask-WTF's cache of the CSRF token
    # in g: drop the one made for the sign-in page, whose session the sign-in ended.
    g.pop("csrf_token", None)
    job = make_job(params={"duration": 0, "lines_per_second": 0})
    planned = make_job(plan={"kind": "cron", "expression": "0 3 * * *"})
    sync.reschedule(planned)
    start_process("scheduler")
    token = csrf_from(client.get(f"/jobs/{job.id}"))

    redis_server.stop()
    try:
        response = client.post(f"/jobs/{job.id}/run", data={"csrf_token": token, "args": ""})
        assert response.status_code == 302
        run = db.session.scalar(db.select(Run).where(Run.job_id == job.id))
        assert run.status == RunStatus.QUEUED
        page = client.get(response.location)
        assert page.status_code == 200 and "Queued" in page.get_data(as_text=True)
    finally:
        redis_server.start()  # empty, as after a restart without persistence

    assert final(run.id, timeout=40).status == RunStatus.SUCCEEDED
    # The schedule came back from the database too.
    wait_for(lambda: redis_server_has_occurrence(planned.id), 70, message="schedule re-synced")


def redis_server_has_occurrence(job_id):
    from webapp.extensions import redis_client

    return redis_client.conn.zscore(sync.scheduler().scheduled_jobs_key, sync.occurrence_id(job_id)) is not None


def start_worker(start_process, **env):
    """A worker process like the `worker` fixture's, with settings of its own."""
    from rq import Worker

    from webapp.extensions import redis_client

    process = start_process(env=env)
    wait_for(lambda: Worker.all(connection=redis_client.conn) or process.proc.poll() is not None, 30,
             message="worker start")
    assert process.proc.poll() is None, process.output()
    return process


def test_a_redis_outage_during_a_run_loses_nothing_and_the_worker_goes_on(ctx, redis_server, start_process):
    from sqlalchemy import select

    from tests.integration.test_recovery import in_progress
    from webapp.execution import dispatch, livelog
    from webapp.extensions import redis_client
    from webapp.models import RunLogLine
    from webapp.models.types import utcnow

    # A run goes on through an outage shorter than the silence after which housekeeping would
    # declare it lost (30 s by default, 4 s in the other tests).
    worker = start_worker(start_process, FIRETIME_RUN_DEAD_AFTER="10")
    job = make_job(params={"duration": 8, "lines_per_second": 5})
    run = in_progress(dispatch.request_run(job).id)
    wait_for(lambda: redis_client.conn.xlen(livelog.STREAM.format(run.id)) >= 15, 30, message="3 s of log")
    away_from = utcnow()
    redis_server.stop()
    try:
        time.sleep(2)  # the outage itself: Redis is away for 2 s of the run
    finally:
        back_at = utcnow()
        redis_server.start()  # empty, as after a restart without persistence

    # The live view resumes: lines reach the new, empty Redis while the run goes on.
    wait_for(lambda: redis_client.conn.xlen(livelog.STREAM.format(run.id)) > 0, 30, message="live log resumed")
    run = final(run.id, timeout=60)
    assert run.status == RunStatus.SUCCEEDED, run.message
    lines = db.session.execute(select(RunLogLine.message, RunLogLine.at).where(RunLogLine.run_id == run.id)
                               .order_by(RunLogLine.seq)).all()
    messages = [message for message, _ in lines]
    assert messages[0].startswith("Self-test started") and messages[-1] == "Self-test finished."
    assert len(messages) == run.line_count == run.stats["lines"] + 2  # every line, none twice
    # The lines written while Redis was away reached the live view once it was back.
    # (From a moment after the stop: a line sent as Redis went down may have been taken by the old
    # Redis and gone with it, which no client can tell apart from one that reached the new one.)
    written_away = {message for message, at in lines if away_from + timedelta(milliseconds=500) <= at <= back_at}
    assert len(written_away) >= 5
    assert written_away <= {line["msg"] for line in livelog.all_lines(redis_client.conn, run.id)}

    assert worker.proc.poll() is None, worker.output()[-3000:]  # the worker waited for Redis
    again = final(dispatch.request_run(job, args="duration=0").id, timeout=60)
    assert again.status == RunStatus.SUCCEEDED and again.worker_name == run.worker_name


def test_a_hung_redis_fails_page_calls_after_the_socket_timeout_instead_of_holding_them(ctx, client, login_as,
                                                                                        redis_server, app,
                                                                                        monkeypatch):
    """A Redis that stops answering (a stopped process, a cut that drops packets) is not refused
    like a dead one: without a socket timeout each Redis call of a page would wait for ever."""
    import os
    import signal

    from webapp.execution import dispatch

    from webapp.extensions import redis_client

    # The app's client as configured: an RQ worker made in this test process earlier (burst
    # workers of other tests) raised the shared client's socket timeout for its blocking waits.
    monkeypatch.setitem(app.extensions, "redis", redis_client.make(app))
    user = make_user()
    login_as(user)
    job = make_job()
    from webapp.execution import lifecycle

    run = dispatch.request_run(job, user=user)
    lifecycle.claim(run.id, "host-a.1", live=False)  # in progress: the dashboard asks Redis for its progress
    client.get("/dashboard/")  # connections made while Redis answers
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = client.get("/dashboard/")
        took = time.monotonic() - started
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    assert response.status_code == 200
    assert took < 4 * app.config["REDIS_SOCKET_TIMEOUT"] + 5, f"the dashboard took {took:.1f} s"
