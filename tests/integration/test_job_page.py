"""The job page's tabs, answered as a full page (no JavaScript) and as HTMX fragments; the
schedule saved in place; the executions tab's filters and cancel; the audit and chart tabs."""
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import g
from sqlalchemy import select

from tests.factories import csrf_from, make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import AuditEvent, Job, Role, Run, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.scheduling import sync

TABS = ("information", "scheduling", "executions", "audit", "charts")
HX = {"HX-Request": "true"}


def hx(target):
    return {**HX, "HX-Target": target}


@pytest.fixture
def admin(ctx, login_as):
    user = make_user(username="alice")
    login_as(user)
    g.pop("csrf_token", None)
    return user


def add_run(job, status=RunStatus.SUCCEEDED, *, ago=timedelta(hours=1), seconds=5, trigger=Trigger.PLAN, user=None):
    created = utcnow() - ago
    started = created if status not in (RunStatus.QUEUED, RunStatus.SKIPPED) else None
    finished = started + timedelta(seconds=seconds) if started and status != RunStatus.IN_PROGRESS else None
    run = Run(job_id=job.id, trigger=trigger, status=status, created_at=created, started_at=started,
              finished_at=finished, requested_by_id=getattr(user, "id", None))
    db.session.add(run)
    db.session.commit()
    return run


@pytest.mark.parametrize("tab", TABS)
def test_each_tab_is_a_page_without_javascript_and_a_fragment_with_htmx(client, admin, tab):
    job = make_job(name="Nightly export")
    page = client.get(f"/jobs/{job.id}?tab={tab}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<html" in html and 'role="tablist"' in html
    # The chosen tab is the selected one, and the only one in the tab order.
    assert re.search(rf'id="tab-{tab}"[^>]*aria-selected="true"[^>]*tabindex="0"', html)
    assert html.count('aria-selected="true"') == 1 and html.count('tabindex="-1"') == len(TABS) - 1
    assert f'data-tab="{tab}"' in html and f'aria-labelledby="tab-{tab}"' in html

    fragment = client.get(f"/jobs/{job.id}?tab={tab}", headers=hx("job-tab"))
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and 'role="tablist"' not in body
    assert body.lstrip().startswith('<section id="job-tab"') and f'data-tab="{tab}"' in body
    assert "HX-Request" in fragment.headers.get("Vary", "")


def test_an_unknown_tab_shows_the_information_tab(client, admin):
    job = make_job(name="Nightly export", description="Exports every night.")
    html = client.get(f"/jobs/{job.id}?tab=%3Cscript%3E").get_data(as_text=True)
    assert 'data-tab="information"' in html and "Exports every night." in html
    assert "<script>" not in html


def test_information_shows_parameters_and_report_and_a_system_job_says_what_is_fixed(client, admin):
    job = make_job(name="Export A", report_enabled=True, report_recipients="dm@example.org",
                   params={"duration": 3, "lines_per_second": 0})
    html = client.get(f"/jobs/{job.id}?tab=information").get_data(as_text=True)
    assert "On: sent to dm@example.org when a run ends" in html
    assert "Duration (seconds): 3" in html
    system = make_job(name="Purge history", system=True)
    html = client.get(f"/jobs/{system.id}?tab=information").get_data(as_text=True)
    assert "identifier and description are read-only" in html
    assert "Off: no report is sent" in html


def test_scheduling_says_previous_fire_is_the_last_run_whoever_started_it(client, admin):
    job = make_job(name="Export A", plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["06:00"]})
    add_run(job, ago=timedelta(days=2))
    by_hand = add_run(job, ago=timedelta(hours=3), trigger=Trigger.HAND, user=admin)
    add_run(job, RunStatus.SKIPPED, ago=timedelta(hours=1))  # a skip is not a time the job ran
    html = client.get(f"/jobs/{job.id}?tab=scheduling").get_data(as_text=True)
    assert f"run #{by_hand.id}</a>\n        by hand (alice)" in html
    assert "The last time the job ran, whoever started it" in html


def save_plan(client, job, plan, version=None, headers=None):
    data = {"csrf_token": csrf_from(client.get(f"/jobs/{job.id}?tab=scheduling")),
            "version": str(job.version if version is None else version),
            **{f"plan-{key}": value for key, value in plan.items()}}
    data["plan-shown_kind"] = plan["kind"]
    return client.post(f"/jobs/{job.id}/plan", data=data, headers=headers or {})


def test_the_schedule_is_saved_in_place_and_nothing_else_changes(client, admin):
    job = make_job(name="Export A", description="Keep me.", report_enabled=True, report_recipients="a@example.org")
    response = save_plan(client, job, {"kind": "cron", "expression": "@daily"}, headers=hx("job-tab"))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "The schedule is saved." in html and "cron 0 0 * * *" in html
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.plan == {"kind": "cron", "expression": "0 0 * * *"}
    assert job.description == "Keep me." and job.report_enabled and job.version == 2
    assert job.next_fire_at is not None
    event = db.session.query(AuditEvent).filter_by(object_type="job", action="edit").one()
    assert set(event.after) == {"plan", "next_fire_at"}


def test_a_schedule_saved_without_javascript_goes_back_to_the_tab(client, admin):
    job = make_job(name="Export A")
    response = save_plan(client, job, {"kind": "interval", "every": "6", "unit": "hours"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/jobs/{job.id}?tab=scheduling")


def test_a_wrong_schedule_is_refused_next_to_its_field_in_our_words(client, admin):
    job = make_job(name="Export A")
    response = save_plan(client, job, {"kind": "cron", "expression": "61 * * * *"}, headers=hx("job-tab"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200  # htmx swaps only 2xx answers
    assert "The schedule is not saved" in html
    assert "The minute field takes 0–59; 61 is out of range." in html
    assert "is not acceptable" not in html
    assert save_plan(client, job, {"kind": "cron", "expression": "61 * * * *"}).status_code == 400
    db.session.expire_all()
    assert db.session.get(Job, job.id).plan == {"kind": "disabled"}


def test_a_schedule_from_a_stale_tab_is_refused_with_what_changed(client, admin):
    job = make_job(name="Export A")
    opened = job.version
    assert save_plan(client, job, {"kind": "interval", "every": "6", "unit": "hours"}).status_code == 302
    response = save_plan(client, job, {"kind": "cron", "expression": "0 2 * * *"}, version=opened,
                         headers=hx("job-tab"))
    html = response.get_data(as_text=True)
    assert "Not saved: this job was changed since you opened it." in html
    assert "Changed by alice" in html and "every 6 hours" in html
    db.session.expire_all()
    assert db.session.get(Job, job.id).plan["kind"] == "interval"


def test_executions_filter_by_status_and_date_range(client, admin):
    job = make_job(name="Export A")
    old_failed = add_run(job, RunStatus.FAILED, ago=timedelta(days=10))
    new_failed = add_run(job, RunStatus.FAILED, ago=timedelta(hours=2))
    fine = add_run(job, RunStatus.SUCCEEDED, ago=timedelta(hours=1))
    today = utcnow().date()

    def shown(query):
        html = client.get(f"/jobs/{job.id}?tab=executions&{query}", headers=hx("runs-table")).get_data(as_text=True)
        return {int(i) for i in re.findall(r'<tr id="run-(\d+)"', html)}, html

    assert shown("")[0] == {old_failed.id, new_failed.id, fine.id}
    assert shown("status=failed")[0] == {old_failed.id, new_failed.id}
    since = (today - timedelta(days=3)).isoformat()
    assert shown(f"status=failed&from={since}")[0] == {new_failed.id}
    until = (today - timedelta(days=5)).isoformat()
    assert shown(f"to={until}")[0] == {old_failed.id}
    ids, html = shown("from=2026-02-30&status=nonsense")
    assert ids == {old_failed.id, new_failed.id, fine.id}
    assert "From: give a date as YYYY-MM-DD" in html and "Unknown status" in html
    ids, html = shown("from=0001-01-01&to=9999-12-31")
    assert "From: give a date" in html and "To: give a date" in html


def test_executions_poll_while_a_run_is_active_and_offer_cancel_only_then(client, admin):
    job = make_job(name="Export A")
    done = add_run(job, RunStatus.SUCCEEDED)
    html = client.get(f"/jobs/{job.id}?tab=executions").get_data(as_text=True)
    assert 'hx-trigger="every 3s"' not in html and "/cancel" not in html
    assert f'data-log-popup="{done.id}"' in html  # a click opens the log popup
    waiting = add_run(job, RunStatus.QUEUED, ago=timedelta(0))
    html = client.get(f"/jobs/{job.id}?tab=executions", headers=hx("runs-table")).get_data(as_text=True)
    assert 'hx-trigger="every 3s"' in html
    assert html.count("/cancel") == 2 and f"/runs/{waiting.id}/cancel" in html  # action and hx-post
    assert 'name="csrf_token"' in html


def test_cancel_from_the_tab_cancels_the_waiting_run(client, admin):
    job = make_job(name="Export A")
    waiting = add_run(job, RunStatus.QUEUED, ago=timedelta(0))
    token = csrf_from(client.get(f"/jobs/{job.id}?tab=executions"))
    assert client.post(f"/runs/{waiting.id}/cancel", data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Run, waiting.id).status == RunStatus.CANCELLED
    html = client.get(f"/jobs/{job.id}?tab=executions", headers=hx("runs-table")).get_data(as_text=True)
    assert 'hx-trigger="every 3s"' not in html


def test_audit_tab_shows_this_jobs_records_and_not_another_jobs(client, admin):
    job = make_job(name="Export A")
    other = make_job(name="Export B")
    for target in (job, other):
        save_plan(client, target, {"kind": "interval", "every": "6", "unit": "hours"})
    run = add_run(job, RunStatus.QUEUED, ago=timedelta(0))
    client.post(f"/runs/{run.id}/cancel", data={"csrf_token": csrf_from(client.get(f"/jobs/{job.id}"))})
    html = client.get(f"/jobs/{job.id}?tab=audit", headers=hx("job-tab")).get_data(as_text=True)
    assert "Export A" in html and "Export B" not in html
    assert re.findall(r'action-tag">(\w+)<', html) == ["cancel", "edit"]  # newest first
    assert "&#34;interval&#34;" in html  # the plan's before and after


def test_audit_tab_shows_a_domain_admin_only_what_it_may_read(client, ctx, login_as):
    study = make_domain("Study A")
    job = make_job(name="Export A", domain=study)
    superadmin = make_user(username="root")
    from webapp.models.audit import record
    record("edit", "job", job, actor=superadmin, before={"description": ""}, after={"description": "x"})
    record("login", "user", superadmin, actor=superadmin, object_name="root")
    db.session.commit()
    login_as(make_user(Role.DOMAIN_ADMIN, domain=study, username="study-admin"))
    html = client.get(f"/jobs/{job.id}?tab=audit").get_data(as_text=True)
    assert re.findall(r'action-tag">(\w+)<', html) == ["edit"]  # not the superadmin's sign-in


def test_charts_show_durations_per_run_and_success_per_day_with_their_numbers(client, admin):
    job = make_job(name="Export A")
    runs = [add_run(job, status, ago=timedelta(days=days, hours=1), seconds=seconds)
            for status, days, seconds in ((RunStatus.SUCCEEDED, 0, 4), (RunStatus.FAILED, 0, 9),
                                          (RunStatus.SUCCEEDED, 2, 7))]
    html = client.get(f"/jobs/{job.id}?tab=charts", headers=hx("job-tab")).get_data(as_text=True)
    assert html.count("<svg") == 2 and html.count("<title>") >= 2
    for run in runs:
        assert f'href="/runs/{run.id}"' in html  # each bar and each row of the numbers link the run
    assert 'fill="#b91c1c"' in html  # the failed run's bar is red
    assert "50 %" in html and "100 %" in html  # today: one of two; two days ago: one of one
    assert "0m 09s" in html


def test_charts_of_a_job_without_runs(client, admin):
    job = make_job(name="Export A")
    html = client.get(f"/jobs/{job.id}?tab=charts").get_data(as_text=True)
    assert "No run of this job has ended yet." in html
    assert "No run of this job ended in the last 30 days." in html


def test_a_removed_job_offers_restore_not_run_now(client, admin):
    job = make_job(name="Export A", plan={"kind": "interval", "every": 6, "unit": "hours",
                                          "anchor": "2026-01-01T00:00:00+00:00"})
    client.post(f"/jobs/{job.id}/remove", data={"csrf_token": csrf_from(client.get(f"/jobs/{job.id}"))})
    html = client.get(f"/jobs/{job.id}?tab=scheduling").get_data(as_text=True)
    assert "This job is removed." in html and ">Restore</button>" in html
    assert "Run now" not in html and "Runs only when started by hand" not in html
    assert "None: the job is removed. Restore it to put it back on its plan." in html


def test_duplicate_run_arguments_are_refused_with_a_clear_message(client, admin):
    job = make_job(name="Export A")
    token = csrf_from(client.get(f"/jobs/{job.id}"))
    response = client.post(f"/jobs/{job.id}/run", data={"csrf_token": token, "args": "duration=2 duration=3"},
                           follow_redirects=True)
    assert "duration is given twice (duration=2 and duration=3); give each argument once." in \
        response.get_data(as_text=True)
    assert db.session.query(Run).filter_by(job_id=job.id).count() == 0


def test_run_now_opens_the_run_page_without_a_notice_that_would_outlive_the_run(client, admin):
    """The run page says the run's state itself; a "queued" flash would still show after it started."""
    job = make_job(name="Export A")
    token = csrf_from(client.get(f"/jobs/{job.id}"))
    response = client.post(f"/jobs/{job.id}/run", data={"csrf_token": token})
    run = db.session.query(Run).filter_by(job_id=job.id).one()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/runs/{run.id}")
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert 'class="flash' not in page and "is queued" not in page
    assert "Queued" in page


@pytest.mark.parametrize("tab", TABS)
def test_a_job_of_another_domain_answers_404_on_every_tab(client, ctx, login_as, tab):
    mine, theirs = make_domain("Study A"), make_domain("Study B")
    job = make_job(name="Their export", domain=theirs)
    login_as(make_user(Role.DOMAIN_ADMIN, domain=mine, username="study-a-admin"))
    g.pop("csrf_token", None)
    for headers in ({}, hx("job-tab")):
        response = client.get(f"/jobs/{job.id}?tab={tab}", headers=headers)
        assert response.status_code == 404 and "Their export" not in response.get_data(as_text=True)
    token = csrf_from(client.get("/jobs/"))
    response = client.post(f"/jobs/{job.id}/plan", data={"csrf_token": token, "plan-kind": "disabled"})
    assert response.status_code == 404


@pytest.mark.parametrize("tab", TABS)
def test_every_tab_of_a_job_whose_type_is_gone_still_opens(client, admin, tab):
    job = make_job(name="Old export", job_type="site.renamed_export",
                   plan={"kind": "cron", "expression": "0 2 * * *"})
    add_run(job, RunStatus.FAILED)
    for headers in ({}, hx("job-tab")):
        response = client.get(f"/jobs/{job.id}?tab={tab}", headers=headers)
        assert response.status_code == 200, (tab, headers)
    assert "broken: unknown job type" in client.get(f"/jobs/{job.id}?tab={tab}").get_data(as_text=True)


def test_a_system_jobs_automatic_schedule_is_offered_on_the_scheduling_tab(client, admin):
    job = make_job(name="Purge history", job_type="system.purge_history", system=True, plan={"kind": "automatic"})
    html = client.get(f"/jobs/{job.id}?tab=scheduling").get_data(as_text=True)
    assert '<option selected value="automatic">' in html
    assert "<dd>automatic: daily at 02:30" in html  # the plan its code declares


# --- a skipped occurrence ----------------------------------------------------------------------

SERVER = ZoneInfo("Europe/Amsterdam")  # the tests' FIRETIME_TIMEZONE


def skipped_by_hand(client, job):
    """The job's next occurrence skipped with the button on its scheduling tab: the page it opens
    and the skipped run."""
    token = csrf_from(client.get(f"/jobs/{job.id}?tab=scheduling"))
    page = client.post(f"/jobs/{job.id}/skip-next", data={"csrf_token": token}, follow_redirects=True)
    return page.get_data(as_text=True), db.session.scalar(select(Run).where(Run.job_id == job.id))


def planned_job():
    job = make_job(name="Export A", plan={"kind": "daily", "days": list(range(7)), "times": ["06:00"]})
    sync.reschedule(job)
    return job


def cells(page, run, row_class=""):
    """The text of each cell of the run's row."""
    row = re.search(rf'<tr id="run-{run.id}"[^>]*{row_class}[^>]*>(.*?)</tr>', page, re.S).group(1)
    return [re.sub(r"<[^>]+>|\s+", " ", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_skip_next_says_which_occurrence_is_skipped_and_which_follows(client, admin):
    job = planned_job()
    first = job.next_fire_at
    page, run = skipped_by_hand(client, job)
    following = db.session.get(Job, job.id).next_fire_at
    assert run.status == RunStatus.SKIPPED and run.occurrence_at == first and run.requested_by_id == admin.id
    assert following > first
    at = [t.astimezone(SERVER).strftime("%Y-%m-%d %H:%M") for t in (first, following)]
    assert f"The occurrence of {at[0]} is skipped; the next is {at[1]}." in page
    assert at[0].endswith("06:00") and at[1].endswith("06:00")


def test_the_job_page_lists_a_skipped_occurrence_as_skipped_by_its_user_at_its_time(client, admin):
    job = planned_job()
    _, run = skipped_by_hand(client, job)
    row = cells(client.get(f"/jobs/{job.id}?tab=executions").get_data(as_text=True), run)
    assert "Skipped" in row[1] and row[2] == "Skipped by alice"
    assert row[3] == run.occurrence_at.astimezone(SERVER).strftime("%Y-%m-%d %H:%M:%S")
    assert not any("queued" in cell.lower() for cell in row)


def test_executions_list_a_skipped_occurrence_as_skipped_by_its_user_at_its_time(client, admin):
    job = planned_job()
    _, run = skipped_by_hand(client, job)
    row = cells(client.get("/executions/").get_data(as_text=True), run, 'class="exec-row"')
    assert "Skipped" in row[3] and row[7] == "Skipped by alice"
    assert row[8] == run.occurrence_at.astimezone(SERVER).strftime("%Y-%m-%d %H:%M:%S")
    assert not any("queued" in cell.lower() for cell in row)
