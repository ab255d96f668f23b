"""Redis restarted empty while people work: nothing lost, nothing stuck, no error pages."""
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
