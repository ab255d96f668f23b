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
