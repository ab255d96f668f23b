"""/healthz and the command line, as an operator uses them."""
from types import SimpleNamespace

from sqlalchemy import func, select

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from webapp.extensions import db
from webapp.models import Domain, Job, Run, RunStatus, User


def test_healthz_tells_anonymous_callers_the_status_alone(ctx, client, worker):
    """A load balancer needs the status and its code; worker names are for the console's users."""
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_reports_each_part(ctx, client, login_as, start_process, worker):
    login_as(make_user())
    body = client.get("/healthz").get_json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert body["workers"]["ok"] and body["workers"]["count"] == 1
    assert body["scheduler"]["ok"] is False  # none started yet
    start_process("scheduler")
    wait_for(lambda: client.get("/healthz").get_json()["scheduler"]["ok"], 15, message="scheduler in /healthz")
    assert client.get("/healthz").status_code == 200


def test_healthz_says_unavailable_when_redis_is_down(app, client, login_as, redis_server):
    # No app context of the test around the requests: two clients must not share its `g`.
    with app.app_context():
        user = SimpleNamespace(username=make_user().username)
    login_as(user)
    anonymous = app.test_client()
    redis_server.stop()
    try:
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "unavailable" and body["redis"]["ok"] is False and body["database"]["ok"]
        response = anonymous.get("/healthz")
        assert response.status_code == 503 and response.get_json() == {"status": "unavailable"}
    finally:
        redis_server.start()


def test_demo_seed_is_idempotent(ctx):
    runner = ctx.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    counts = [db.session.scalar(select(func.count()).select_from(model)) for model in (Domain, User, Job, Run)]
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0, second.output
    assert [db.session.scalar(select(func.count()).select_from(m)) for m in (Domain, User, Job, Run)] == counts
    assert counts[0] == 5 and counts[1] == 6  # four clinical domains and the linkage project Registry L
    names = set(db.session.scalars(select(User.username)))
    assert names == {"superadmin", "sysadmin", "studya-admin", "studyb-admin", "api-bot", "registry-admin"}
    site = db.session.scalar(select(Domain).where(Domain.name == "Site A1"))
    assert site.parent.name == "Study A"
    assert db.session.scalar(select(User).where(User.username == "sysadmin")).check_password("demo")


def test_cli_runs_a_job_by_name_and_shows_queues(ctx, worker):
    job = make_job(name="Nightly check", params={"duration": 0, "lines_per_second": 0})
    runner = ctx.test_cli_runner()
    result = runner.invoke(args=["jobs", "run", "Nightly check"])
    assert result.exit_code == 0 and "Queued run" in result.output
    run = wait_for(lambda: db.session.scalar(select(Run).where(Run.job_id == job.id,
                                                               Run.status == RunStatus.SUCCEEDED)), 20)
    db.session.expire_all()
    assert run.trigger == "cli"
    missing = runner.invoke(args=["jobs", "run", "No such job"])
    assert missing.exit_code != 0 and "No job named 'No such job'" in missing.output
    shown = runner.invoke(args=["queues", "show"])
    assert shown.exit_code == 0 and "default" in shown.output and "worker " in shown.output


def test_a_worker_started_with_queues_takes_only_those(ctx, start_process):
    from tests.integration.test_engine import final
    from webapp.execution import dispatch
    from webapp.scheduling import sync

    sync.ensure_system_jobs()
    report = db.session.scalar(select(Job).where(Job.job_type == "system.activity_report"))  # queue "system"
    selftest = make_job(params={"duration": 0, "lines_per_second": 0})  # queue "default"
    start_process("--queues", "system")
    waiting = dispatch.request_run(selftest)
    assert final(dispatch.request_run(report).id).status == RunStatus.SUCCEEDED
    assert db.session.get(Run, waiting.id).status == RunStatus.QUEUED
    start_process("--queues", "default")
    assert final(waiting.id).status == RunStatus.SUCCEEDED
