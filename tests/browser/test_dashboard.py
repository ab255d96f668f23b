"""The dashboard in a real browser, with a real worker running a self-test job."""
import os
import re

from playwright.sync_api import expect

from tests.conftest import wait_for
from tests.factories import make_domain, make_job, make_user
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Run, RunStatus, Trigger
from webapp.models.types import utcnow


def sign_in(page, live_server, path, username="root"):
    page.goto(f"{live_server}/login?next={path}")
    page.fill("#username", username)
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}{path}")


def status_of(run_id) -> str:
    db.session.expire_all()
    return db.session.get(Run, run_id).status


def test_the_dashboard_follows_a_run_while_it_is_in_progress(ctx, live_server, worker, page, check_accessible):
    user = make_user(username="root", password="correct horse")
    job = make_job("Dashboard self-test", domain=make_domain("Study A"),
                   params={"duration": 8, "lines_per_second": 4})
    earlier = make_job("Broken import")
    db.session.add(Run(job_id=earlier.id, trigger=Trigger.PLAN, status=RunStatus.FAILED, message="File not found",
                       started_at=utcnow(), finished_at=utcnow()))
    db.session.commit()
    run = dispatch.request_run(job, trigger=Trigger.HAND, user=user)
    wait_for(lambda: status_of(run.id) == RunStatus.IN_PROGRESS, 20, message="the run starts")

    sign_in(page, live_server, "/dashboard/")
    live = page.locator(f"#live-run-{run.id}")
    expect(live).to_be_visible()
    bar = live.get_by_role("progressbar")
    first = int(bar.get_attribute("aria-valuenow"))
    # The bar moves without a reload ...
    expect(bar).not_to_have_attribute("aria-valuenow", str(first), timeout=10_000)
    expect(live.locator(".progress-text")).to_have_text(re.compile(r"^\d+ % · \d+ of 8 s$"))
    succeeded = page.locator('a.dash-count[href*="status=succeeded&"] strong')
    expect(succeeded).to_have_text("0")
    check_accessible(page)
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], "dashboard-running.png"),
                        full_page=True)
    # ... and when the run ends it leaves the panel and counts as succeeded, still without a reload.
    expect(live).to_have_count(0, timeout=20_000)
    expect(page.locator("#dashboard-live")).to_contain_text("No run is in progress.")
    expect(succeeded).to_have_text("1", timeout=10_000)
    # The latest failure opens its log (the popup, or the run page without it).
    failure = page.locator("#failures-title ~ table a[data-log-popup]")
    expect(failure).to_have_count(1)
    expect(failure).to_contain_text("Broken import")
    assert page.console_errors == []
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], "dashboard.png"), full_page=True)
