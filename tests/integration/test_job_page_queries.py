"""Every tab of the job page sends as many SQL statements for a job with 40 runs (and their
audit records) as for one with 4: nothing is read once per row."""
from datetime import timedelta
from types import SimpleNamespace

from tests.factories import make_domain, make_job, make_user
from tests.integration.test_query_counts import statements
from webapp.extensions import db
from webapp.models import Role, Run, RunStatus, Trigger
from webapp.models.audit import record
from webapp.models.types import utcnow

TABS = ("information", "scheduling", "executions", "audit", "charts")


def add_runs(app, job_id, count, start):
    """`count` runs over the last days, each asked for by a user of its own and cancelled by them."""
    with app.app_context():
        for k in range(start, start + count):
            user = make_user(Role.SYSTEM, username=f"requester-{k}")
            at = utcnow() - timedelta(hours=k)
            status = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)[k % 3]
            run = Run(job_id=job_id, trigger=Trigger.HAND, status=status, requested_by_id=user.id,
                      created_at=at, started_at=at, finished_at=at + timedelta(seconds=k))
            db.session.add(run)
            db.session.flush()
            record("cancel", "run", run, actor=user, object_name="Focus job", domain_id=run.job.domain_id)
        db.session.commit()


def test_each_tab_sends_as_many_statements_for_40_runs_as_for_4(app, login_as):
    with app.app_context():
        study = make_domain("Study")
        make_user(Role.DOMAIN_ADMIN, domain=study, username="study-admin")
        job_id = make_job("Focus job", domain=study).id
    client = login_as(SimpleNamespace(username="study-admin"))
    counted, bodies = {}, {}
    for runs, start in ((4, 0), (40, 4)):
        add_runs(app, job_id, runs - (4 if runs == 40 else 0), start)
        for tab in TABS:
            url = f"/jobs/{job_id}?tab={tab}"
            client.get(url)  # once before, so that nothing first-time is counted
            with statements(app) as sent:
                response = client.get(url)
            assert response.status_code == 200, tab
            counted[tab, runs], bodies[tab, runs] = len(sent), response.get_data(as_text=True)
    assert {tab: counted[tab, 40] for tab in TABS} == {tab: counted[tab, 4] for tab in TABS}
    # ... and they did show the runs, their requesters and their records.
    for runs in (4, 40):
        assert bodies["executions", runs].count("· requester-") == min(runs, 25)
        assert bodies["audit", runs].count('action-tag">cancel<') == min(runs, 25)
        assert bodies["charts", runs].count('<a href="/runs/') == 2 * min(runs, 50)  # bars and the numbers
