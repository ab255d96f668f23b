"""The job page in a real browser: its tabs by keyboard and with the back button, the schedule
changed in place, and axe-core on every tab."""
import os
import re
from datetime import timedelta

from playwright.sync_api import expect

from tests.factories import make_job, make_user
from webapp.extensions import db
from webapp.models import Job, Run, RunStatus, Trigger
from webapp.models.audit import record
from webapp.models.types import utcnow
from webapp.scheduling import sync

TABS = ["Information", "Scheduling", "Latest executions", "Audit", "Charts"]


def screenshot(page, name):
    """Saved when FIRETIME_SCREENSHOTS names a folder, to look at the layout."""
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def sign_in(page, live_server, path):
    page.goto(f"{live_server}{path}")
    page.fill("#username", "alice")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")


def a_job_with_history():
    job = make_job(name="Nightly export", description="Exports the study every night.",
                   plan={"kind": "daily", "days": list(range(7)), "times": ["02:30"]},
                   report_enabled=True, report_recipients="dm@example.org")
    now = utcnow()
    job.next_fire_at = sync.first_fire(job, now)  # as a saved job has
    for k, status in enumerate([RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED, RunStatus.WARNINGS] * 3):
        start = now - timedelta(days=12 - k, hours=1)
        db.session.add(Run(job_id=job.id, trigger=Trigger.PLAN, status=status, created_at=start, started_at=start,
                           finished_at=start + timedelta(seconds=5 + 7 * k), message="" if status != RunStatus.FAILED
                           else "Export file could not be written."))
    record("edit", "job", job, actor=None, before={"description": "Exports the study."},
           after={"description": job.description})
    db.session.commit()
    return job


def selected_tab(page):
    return page.locator("[role=tab][aria-selected=true]")


def test_tabs_by_keyboard_with_the_address_and_the_back_button(ctx, live_server, page, check_accessible):
    make_user(username="alice", password="correct horse")
    job = a_job_with_history()
    sign_in(page, live_server, f"/jobs/{job.id}")
    expect(page.locator("h1")).to_contain_text("Nightly export")
    expect(page.get_by_role("tablist")).to_be_visible()
    expect(page.get_by_role("tab")).to_have_text(TABS)
    expect(selected_tab(page)).to_have_text("Information")
    expect(page.get_by_role("tabpanel")).to_contain_text("On: sent to dm@example.org")

    # Tab into the tab list: focus lands on the selected tab only (the others are tabindex -1).
    page.get_by_role("tab", name="Information").focus()
    page.keyboard.press("ArrowRight")
    expect(selected_tab(page)).to_have_text("Scheduling")
    expect(page.get_by_role("tab", name="Scheduling")).to_be_focused()
    expect(page).to_have_url(re.compile(r"\?tab=scheduling$"))
    expect(page.get_by_role("tabpanel")).to_contain_text("Next five fire times")
    expect(page.locator("#next-fires li")).to_have_count(5)
    expect(page.get_by_role("tabpanel")).to_contain_text("The last time the job ran, whoever started it")
    page.keyboard.press("End")
    expect(selected_tab(page)).to_have_text("Charts")
    expect(page).to_have_url(re.compile(r"\?tab=charts$"))
    expect(page.locator("#job-tab svg.chart")).to_have_count(2)
    page.keyboard.press("ArrowRight")  # wraps round to the first
    expect(selected_tab(page)).to_have_text("Information")
    page.keyboard.press("ArrowLeft")  # and back to the last
    expect(selected_tab(page)).to_have_text("Charts")
    page.keyboard.press("Home")
    expect(selected_tab(page)).to_have_text("Information")
    # Keys pressed faster than the panels load: the last one wins, and no late answer undoes it.
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#job-tab")).to_have_attribute("data-tab", "executions")
    expect(selected_tab(page)).to_have_text("Latest executions")
    expect(page).to_have_url(re.compile(r"\?tab=executions$"))
    expect(page.get_by_role("tabpanel")).to_contain_text("Export file could not be written.")
    # The panel is the next stop after the tab list.
    page.keyboard.press("Tab")
    expect(page.get_by_role("tabpanel")).to_be_focused()

    # Back restores the previous tab, forward the next, with the address.
    page.get_by_role("tab", name="Audit").click()
    expect(page.locator("#job-tab")).to_have_attribute("data-tab", "audit")
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?tab=executions$"))
    expect(selected_tab(page)).to_have_text("Latest executions")
    expect(page.get_by_role("tabpanel")).to_contain_text("Export file could not be written.")
    page.go_forward()
    expect(page).to_have_url(re.compile(r"\?tab=audit$"))
    expect(selected_tab(page)).to_have_text("Audit")
    expect(page.get_by_role("tabpanel")).to_contain_text("Exports the study every night.")

    # Each tab, loaded as a page of its own, passes axe-core.
    for key in ("information", "scheduling", "executions", "audit", "charts"):
        page.goto(f"{live_server}/jobs/{job.id}?tab={key}")
        expect(page.locator(f"#job-tab[data-tab={key}]")).to_be_visible()
        check_accessible(page)
        screenshot(page, f"job-tab-{key}.png")
    # htmx logs the panel requests a later key press cancelled (hx-sync replace); nothing else.
    assert [e for e in page.console_errors if not re.match(r"htmx:(afterRequest|sendAbort), ", e)] == []


def test_the_schedule_is_changed_in_place_with_its_fire_times(ctx, live_server, page):
    make_user(username="alice", password="correct horse")
    job = make_job(name="Nightly export")
    sign_in(page, live_server, f"/jobs/{job.id}?tab=scheduling")
    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text("None: the job runs only when started by hand")

    page.get_by_label("Schedule").select_option("period")
    # The fields of a period start empty, and nothing is wrong before anything is typed.
    expect(page.get_by_label("Repeat")).to_have_value("daily", timeout=15_000)  # the fields come by HTMX
    expect(page.locator("#plan-preview")).to_contain_text("Fill in Start (date and time) to see the next fire times.")
    expect(page.locator("#plan-preview .preview-errors")).to_have_count(0)
    page.get_by_label("Schedule").select_option("cron")
    expect(page.locator("#plan-preview")).to_contain_text("Fill in Cron expression")
    page.get_by_label("Cron expression").fill("61 * * * *")
    expect(page.locator("#plan-preview")).to_contain_text("The minute field takes 0–59; 61 is out of range.")
    page.get_by_label("Cron expression").fill("@daily")
    expect(page.locator("#plan-preview ol.fire-times li")).to_have_count(5)
    expect(page.locator("#plan-preview")).to_contain_text("Cron 0 0 * * *")
    screenshot(page, "job-tab-scheduling-editing.png")
    url = page.url
    page.get_by_role("button", name="Save the schedule").click()
    expect(panel.locator(".flash-success")).to_have_text("The schedule is saved.")
    expect(page.locator("#next-fires li")).to_have_count(5)
    expect(panel).to_contain_text("cron 0 0 * * *")
    assert page.url == url  # saved in place: still the job page on its scheduling tab
    db.session.expire_all()
    assert db.session.get(Job, job.id).plan == {"kind": "cron", "expression": "0 0 * * *"}
    assert page.console_errors == []


def test_latest_executions_update_live_and_cancel_a_waiting_run(ctx, live_server, page, check_accessible):
    make_user(username="alice", password="correct horse")
    job = make_job(name="Nightly export")
    now = utcnow()
    running = Run(job_id=job.id, trigger=Trigger.PLAN, status=RunStatus.IN_PROGRESS, created_at=now, started_at=now)
    waiting = Run(job_id=job.id, trigger=Trigger.HAND, status=RunStatus.QUEUED, created_at=now)
    db.session.add_all([running, waiting])
    db.session.commit()
    sign_in(page, live_server, f"/jobs/{job.id}?tab=executions")
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator(f"#run-{running.id}")).to_contain_text("In progress")
    check_accessible(page)
    screenshot(page, "job-tab-executions-active.png")

    # The run ends on the worker: the row says so without a reload.
    db.session.get(Run, running.id).status = RunStatus.SUCCEEDED
    db.session.get(Run, running.id).finished_at = utcnow()
    db.session.commit()
    expect(page.locator(f"#run-{running.id}")).to_contain_text("Succeeded", timeout=8000)

    # Cancel the waiting one from its row, after a confirmation.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Cancel run #{waiting.id}").click()
    expect(page.locator(f"#run-{waiting.id}")).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name=f"Cancel run #{waiting.id}")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"\?tab=executions$"))  # still on the job page
    db.session.expire_all()
    assert db.session.get(Run, waiting.id).status == RunStatus.CANCELLED
    # Nothing is active any more: the table stops asking for itself.
    expect(page.locator("#runs-table")).not_to_have_attribute("hx-trigger", "every 3s")

    # The filters narrow the table and stay in the address.
    page.get_by_label("Status").select_option("cancelled")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"status=cancelled"))
    assert page.console_errors == []
