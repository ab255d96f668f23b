"""A real browser (the system's headless Chromium) against a real server, worker and Redis."""
import os
import re

from playwright.sync_api import expect

from tests.factories import make_job, make_user


def test_sign_in_run_now_and_watch_the_log_live(ctx, live_server, worker, page):
    make_user(username="alice", password="correct horse")
    job = make_job(name="Browser self-test", params={"duration": 3, "lines_per_second": 4})

    page.goto(f"{live_server}/jobs/")
    page.fill("#username", "alice")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("#server-time")).to_be_visible()

    page.locator(f"#job-{job.id}").get_by_role("button", name="Run Browser self-test now").click()
    expect(page.locator("h1")).to_contain_text("of Browser self-test")
    # Lines appear while the run is in progress ...
    expect(page.locator("#log .log-line").nth(2)).to_be_visible(timeout=10_000)
    expect(page.locator("#run-status-label")).to_have_text("In progress")
    expect(page.locator("#live-progress .progress-text")).to_have_text(re.compile(r"^[1-9]\d? % · \d+ of 3 s$"))
    # ... and the page shows the end without a reload.
    expect(page.locator("#run-status-label")).to_have_text("Succeeded", timeout=15_000)
    count = page.locator("#log .log-line").count()
    assert count >= 12
    expect(page.locator("#log .log-line").last).to_contain_text("Self-test finished.")
    expect(page.locator(".live-badge")).to_have_count(0)
    # The content security policy blocked nothing the page needs.
    assert page.console_errors == []
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], "run-live.png"), full_page=True)
        page.goto(f"{live_server}/jobs/")
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], "jobs.png"), full_page=True)


def test_a_long_finished_log_shows_its_end_and_earlier_lines_on_demand(ctx, live_server, page):
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Run, RunLogLine, RunStatus, Trigger
    from webapp.models.types import utcnow

    make_user(username="bob", password="correct horse")
    run = Run(job_id=make_job(name="Chatty job").id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED,
              started_at=utcnow(), finished_at=utcnow(), line_count=1200, progress=100)
    db.session.add(run)
    db.session.commit()
    db.session.execute(insert(RunLogLine), [{"run_id": run.id, "seq": seq, "at": utcnow(), "level": "info",
                                             "message": f"line {seq}"} for seq in range(1, 1201)])
    db.session.commit()

    page.goto(f"{live_server}/runs/{run.id}")
    page.fill("#username", "bob")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    lines = page.locator("#log .log-line")
    expect(lines).to_have_count(1000)
    expect(lines.first).to_have_text(re.compile(r" line 201$"))
    expect(lines.last).to_have_text(re.compile(r" line 1200$"))

    page.get_by_role("link", name="Show earlier lines").click()
    expect(lines).to_have_count(1200)
    expect(lines.first).to_have_text(re.compile(r" line 1$"))
    expect(lines.nth(200)).to_have_text(re.compile(r" line 201$"))
    expect(page.get_by_role("link", name="Show earlier lines")).to_have_count(0)
    assert page.url == f"{live_server}/runs/{run.id}"  # the lines came in place: no new page
    assert page.console_errors == []
