"""The executions page in a real browser: filter, expand a row, read its audit, retry, cancel."""
import os
import re
from datetime import timedelta

from playwright.sync_api import expect

from tests.browser.test_dashboard import sign_in
from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import Run, RunFile, RunStatus, Trigger
from webapp.models.audit import record
from webapp.models.types import utcnow


def shoot(page, name):
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def test_a_row_expands_its_audit_opens_and_retry_and_cancel_work(ctx, live_server, page, check_accessible):
    user = make_user(username="root", password="correct horse")
    job = make_job("Nightly import", domain=make_domain("Study A"))
    other = make_job("Weekly export")
    now = utcnow()
    done = Run(job_id=other.id, trigger=Trigger.PLAN, status=RunStatus.SUCCEEDED, created_at=now - timedelta(hours=2),
               started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2) + timedelta(seconds=95))
    failed = Run(job_id=job.id, trigger=Trigger.HAND, requested_by_id=user.id, status=RunStatus.FAILED,
                 args="duration=1", created_at=now - timedelta(hours=1), started_at=now - timedelta(hours=1),
                 finished_at=now - timedelta(minutes=59), message="Import file missing: /data/in.xml",
                 worker_name="worker-1", stats={"records read": 1200, "records written": 0}, error_count=1,
                 line_count=40)
    db.session.add_all([done, failed])
    db.session.flush()
    db.session.add(RunFile(run_id=failed.id, job_id=job.id, name="rejected.csv", path="r/rejected.csv", size=5300))
    record("cancel", "run", failed, actor=user, object_name=job.name, domain_id=job.domain_id,
           message="An earlier note on this run")
    db.session.commit()

    sign_in(page, live_server, "/executions/")
    rows = page.locator("tr.exec-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Nightly import")  # newest first

    # Expand: statistics, counts, worker, arguments and the file; collapse again.
    row = page.locator(f"#run-{failed.id}")
    expand = row.get_by_role("button", name=f"Details of run #{failed.id}")
    expand.click()
    details = page.locator(f"#run-{failed.id}-details")
    expect(details).to_contain_text("records read")
    expect(details).to_contain_text("1200")
    expect(details).to_contain_text("worker-1")
    expect(details.get_by_role("link", name="rejected.csv")).to_be_visible()
    expect(expand).to_have_attribute("aria-expanded", "true")
    check_accessible(page)
    shoot(page, "executions-expanded.png")
    expand.click()
    expect(details).to_be_hidden()
    expand.click()
    expect(details).to_be_visible()

    # The audit popup: a modal with this run's records; Esc closes it and focus goes back.
    audit = row.get_by_role("link", name=f"Audit of run #{failed.id}")
    audit.click()
    dialog = page.locator("#audit-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("An earlier note on this run")
    expect(dialog.locator("h2")).to_have_text(f"Audit of run #{failed.id} (Nightly import)")
    check_accessible(page)
    shoot(page, "executions-audit.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(audit).to_be_focused()

    # Retry, confirmed: the answer links the new run, whose row says what it retries.
    page.once("dialog", lambda confirm: confirm.accept())
    row.get_by_role("button", name=f"Retry run #{failed.id}").click()
    flash = page.locator(".flash-success")
    expect(flash).to_contain_text(f"is queued as a retry of #{failed.id}")
    new_id = int(re.search(r"Run #(\d+)", flash.inner_text()).group(1))
    expect(flash.get_by_role("link", name=f"#{new_id}")).to_have_attribute("href", f"/runs/{new_id}")
    new_row = page.locator(f"#run-{new_id}")
    expect(new_row).to_contain_text(f"retry of #{failed.id}")
    expect(new_row).to_contain_text("Queued")
    shoot(page, "executions-retried.png")

    # Cancel the waiting retry with the bulk action.
    new_row.get_by_role("checkbox").check()
    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Cancel ticked waiting runs").click()
    expect(page.locator(".flash")).to_contain_text(f"1 of 1 run(s) cancelled: #{new_id} cancelled.")
    expect(page.locator(f"#run-{new_id}")).to_contain_text("Cancelled")
    assert page.console_errors == []


def test_filters_live_in_the_url_and_the_back_button_restores_them(ctx, live_server, page, check_accessible):
    make_user(username="root", password="correct horse")
    job = make_job("Filtered job")
    for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED):
        db.session.add(Run(job_id=job.id, trigger=Trigger.PLAN, status=status, started_at=utcnow(),
                           finished_at=utcnow()))
    db.session.commit()
    sign_in(page, live_server, "/executions/")
    expect(page.locator("tr.exec-row")).to_have_count(3)
    page.select_option("#exec-status", "failed")
    expect(page.locator("tr.exec-row")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"status=failed"))
    page.fill("#exec-q", "no such thing")
    expect(page.locator("tr.exec-row")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"q=no\+such\+thing"))
    check_accessible(page)
    page.go_back()
    expect(page.locator("tr.exec-row")).to_have_count(1)
    expect(page.locator("#exec-q")).to_have_value("")
    expect(page.locator("#exec-status")).to_have_value("failed")
    page.go_back()
    expect(page.locator("tr.exec-row")).to_have_count(3)
    expect(page.locator("#exec-status")).to_have_value("")
    assert page.console_errors == []
