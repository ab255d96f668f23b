"""Pausing a queue in a real browser, with a real worker: the run in progress finishes, a run
asked for meanwhile waits and says so, the dashboard tells everyone, and a resume starts it."""
import os
import re
import time

from playwright.sync_api import expect

from tests.browser.test_dashboard import sign_in, status_of
from tests.conftest import wait_for
from tests.factories import make_job, make_user
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Run, RunStatus


def _screenshot(page, name):
    folder = os.environ.get("FIRETIME_SCREENSHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, name), full_page=True)


def _started(run_id):
    db.session.expire_all()
    return db.session.get(Run, run_id).started_at is not None


def test_pause_lets_the_running_run_finish_holds_the_next_and_resume_starts_it(ctx, live_server, worker, page,
                                                                               check_accessible):
    make_user(username="root", password="correct horse")
    long_job = make_job("Long self-test", params={"duration": 6, "lines_per_second": 2})
    next_job = make_job("Next self-test", params={"duration": 0, "lines_per_second": 0})
    running = dispatch.request_run(long_job)
    wait_for(lambda: _started(running.id), 20, message="the long run to start")

    sign_in(page, live_server, "/queues/")
    head = page.locator("#qs-default")
    expect(head).to_contain_text("Running")
    expect(page.locator("#q-default-running")).to_contain_text(f"#{running.id}")
    check_accessible(page)

    # Pause, with a reason, confirmed.
    head.get_by_label("Reason").fill("Database upgrade")
    page.once("dialog", lambda confirm: confirm.accept())
    head.get_by_role("button", name="Pause queue default").click()
    expect(page.locator(".flash-success")).to_contain_text("Queue default is paused")
    expect(page.locator("#qs-default")).to_contain_text(re.compile(r"Paused by root at .+: Database upgrade"))
    expect(page.locator("#qs-default").get_by_role("button", name="Resume queue default")).to_be_visible()

    # The run in progress goes on to its end; a run asked for now waits, and says why.
    waiting = dispatch.request_run(next_job)
    expect(page.locator("#q-default-waiting")).to_contain_text(f"#{waiting.id}", timeout=8000)
    expect(page.locator("#q-default-waiting")).to_contain_text("The queue is paused")
    check_accessible(page)
    _screenshot(page, "queues-paused.png")
    wait_for(lambda: status_of(running.id) == RunStatus.SUCCEEDED, 30, message="the long run to finish")
    expect(page.locator("#q-default-running")).to_contain_text("Nothing running.", timeout=8000)
    time.sleep(2)  # the worker is idle now: it would have taken the waiting run by now if it could
    assert status_of(waiting.id) == RunStatus.QUEUED and not _started(waiting.id)

    # The dashboard tells everyone.
    page.goto(f"{live_server}/dashboard/")
    notice = page.locator("#dashboard-paused")
    expect(notice).to_contain_text(re.compile(r"Queue default is paused by root since .+: Database upgrade"))
    check_accessible(page)
    _screenshot(page, "dashboard-paused.png")
    notice.get_by_role("link", name="Queue default").click()
    expect(page).to_have_url(re.compile(r"/queues/#queue-default$"))

    # Resume, confirmed: the waiting run starts and ends.
    page.once("dialog", lambda confirm: confirm.accept())
    page.locator("#qs-default").get_by_role("button", name="Resume queue default").click()
    expect(page.locator(".flash-success")).to_contain_text("Queue default is running again. 1 waiting run handed")
    expect(page.locator("#qs-default")).to_contain_text("Running")
    wait_for(lambda: status_of(waiting.id) == RunStatus.SUCCEEDED, 30, message="the waiting run to run")
    expect(page.locator("#q-default-waiting")).to_contain_text("Nothing waiting.", timeout=8000)
    check_accessible(page)
    _screenshot(page, "queues-resumed.png")
    assert page.console_errors == []
    if os.environ.get("FIRETIME_SCREENSHOTS"):  # the panel's head on a phone
        page.set_viewport_size({"width": 390, "height": 844})
        page.locator("#qs-default").screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"],
                                                                 "queues-head-phone.png"))
