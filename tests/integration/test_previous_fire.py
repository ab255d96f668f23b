"""Previous fire is the last time the job ran, whoever started it (SPEC 5): the list sorts and finds
by the same value the pages and the API show."""
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Job, Trigger

from tests.factories import make_job, make_user


def test_a_run_by_hand_or_api_moves_the_previous_fire_but_is_no_edit(ctx):
    job = make_job(name="Export A")
    version, updated = job.version, job.updated_at
    assert job.prev_fire_at is None
    run = dispatch.request_run(job, trigger=Trigger.API, user=make_user())
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.prev_fire_at == run.created_at
    assert (job.version, job.updated_at) == (version, updated)


def test_run_selected_moves_the_previous_fire_of_each_job_it_started(ctx):
    first, second, removed = make_job(name="A"), make_job(name="B"), make_job(name="C", state="removed")
    started, refused = dispatch.request_runs([first, second, removed], trigger=Trigger.HAND, user=make_user())
    assert len(started) == 2 and len(refused) == 1
    db.session.expire_all()
    assert db.session.get(Job, first.id).prev_fire_at is not None
    assert db.session.get(Job, second.id).prev_fire_at == db.session.get(Job, first.id).prev_fire_at
    assert db.session.get(Job, removed.id).prev_fire_at is None


def test_the_api_shows_it(ctx, client):
    from webapp.models import ApiToken

    user = make_user(role="superadmin")
    _, token = ApiToken.issue(user)
    db.session.commit()
    job = make_job(name="Export A")
    run = dispatch.request_run(job, trigger=Trigger.HAND, user=user)
    body = client.get(f"/api/scheduled-jobs/{job.id}", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["previousFireTime"].startswith(run.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
