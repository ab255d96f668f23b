"""The live log popup in a real browser: it streams a run in progress and then shows its whole
log, filters and finds, keeps focus inside, closes with Esc and gives focus back; and the run page
of a failed run. axe-core checks both."""
import os
import re

from playwright.sync_api import expect

from tests.conftest import wait_for
from tests.factories import make_job, make_user
from tests.integration.test_popup import finished_run
from tests.integration.test_run_page import FAILURE, TRACEBACK
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Run, RunStatus

LEVELS = ("debug", "info", "warning", "error")
CLOSED_EVENTS = "window.popupClosed = []; document.addEventListener('logpopup:closed', e => window.popupClosed.push(e.detail.runId));"


def sign_in(page, url, username):
    page.goto(url)
    page.fill("#username", username)
    page.fill("#password", "pw")
    page.click("button[type=submit]")


def screenshot(page, name):
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=False)


def test_the_popup_streams_a_run_in_progress_then_shows_its_whole_log(ctx, live_server, worker, page):
    user = make_user(username="watcher")
    job = make_job(name="Popup self-test", params={"duration": 4, "lines_per_second": 4})
    running = dispatch.request_run(job, user=user)
    waiting = dispatch.request_run(job, user=user)  # behind the first: its page links the first's log

    sign_in(page, f"{live_server}/runs/{waiting.id}", "watcher")
    page.evaluate(CLOSED_EVENTS)
    page.get_by_role("link", name=f"run #{running.id}").click()
    popup = page.locator("dialog.log-popup")
    expect(popup).to_be_visible()
    expect(popup.locator("h2")).to_have_text(f"Run #{running.id} · Popup self-test")
    # Lines and progress arrive while the run is in progress ...
    lines = popup.locator("#popup-log .log-line")
    expect(lines.nth(3)).to_be_visible(timeout=15_000)
    expect(popup.locator(".state-label")).to_have_text("In progress")
    expect(popup.locator(".progress-text")).to_have_text(re.compile(r"^[1-9]\d? % · \d of 4 s$"))
    seen = lines.count()
    expect(lines.nth(seen + 2)).to_be_visible(timeout=5_000)  # ... and keep coming
    # A find filters the live lines in the browser.
    popup.get_by_label("Find in log").fill("line 1")
    expect(popup.locator("#popup-log .log-line:visible").first).to_contain_text("line 1")
    assert all("line 1" in text for text in popup.locator("#popup-log .log-line:visible").all_inner_texts())
    popup.get_by_label("Find in log").fill("")
    screenshot(page, "popup-live.png")

    # At the end the popup shows the stored log, whole, with the state the run ended in.
    expect(popup.locator(".state-label")).to_have_text("Succeeded", timeout=20_000)
    expect(popup.locator(".log-count")).to_have_text(re.compile(r"^\(\d+ lines\)$"))
    expect(popup.locator("#popup-log .log-line").last).to_contain_text("Self-test finished.")
    stored = db.session.get(Run, running.id)
    db.session.refresh(stored)
    expect(popup.locator("#popup-log .log-line")).to_have_count(stored.line_count)
    expect(popup.get_by_role("link", name="Download log")).to_have_attribute("href", f"/runs/{running.id}/log.txt")

    page.keyboard.press("Escape")
    expect(popup).to_be_hidden()
    wait_for(lambda: page.evaluate("window.popupClosed.length"), 5, message="the close event")  # a task later
    assert page.evaluate("window.popupClosed") == [running.id]
    assert page.console_errors == []


def seeded_failure():
    """A failed run with 120 lines of every level and a traceback, and its retry: the retry's page
    links the failed run's log."""
    job = make_job(name="Import study A")
    messages = {119: FAILURE, 120: TRACEBACK}
    failed = finished_run(job=job, lines=120, status=RunStatus.FAILED, message=FAILURE, error_count=1,
                          level_of=lambda seq: "error" if seq == 119 else "debug" if seq == 120 else LEVELS[seq % 4],
                          message_of=lambda seq: messages.get(seq, f"row {seq}" + (" needle" if seq % 10 == 0 else "")))
    retry = finished_run(job=job, lines=1, retry_of_id=failed.id)
    return failed, retry


def test_the_popup_filters_finds_keeps_focus_and_closes_with_esc(ctx, live_server, page, check_accessible):
    make_user(username="reader")
    failed, retry = seeded_failure()

    sign_in(page, f"{live_server}/runs/{retry.id}", "reader")
    page.evaluate(CLOSED_EVENTS)
    opener = page.get_by_role("link", name=f"run #{failed.id}")
    opener.focus()
    page.keyboard.press("Enter")
    popup = page.locator("dialog.log-popup")
    expect(popup.locator(".state-label")).to_have_text("Failed")
    lines = popup.locator("#popup-log .log-line")
    expect(lines).to_have_count(120)
    expect(popup.locator(".log-count")).to_have_text("(120 lines)")
    check_accessible(page)
    screenshot(page, "popup-failed.png")

    # Levels: warnings and errors only, over the stored log.
    popup.get_by_label("Debug").uncheck()
    expect(popup.locator(".log-count")).to_have_text("(90 of 120 lines match)")
    popup.get_by_label("Info").uncheck()
    expect(popup.locator(".log-count")).to_have_text("(60 of 120 lines match)")
    assert set(re.findall(r"level-(\w+)", " ".join(lines.evaluate_all("els => els.map(e => e.className)")))) == \
        {"warning", "error"}
    # Find, within those levels: "needle" is on every tenth row.
    popup.get_by_label("Find in log").fill("needle")
    expect(popup.locator(".log-count")).to_have_text("(6 of 120 lines match)")
    assert all("needle" in text for text in lines.all_inner_texts())
    expect(popup.get_by_label("Find in log")).to_be_focused()  # typing goes on where it was

    # Focus stays in the popup however far one tabs, both ways.
    for key in ["Tab"] * 15 + ["Shift+Tab"] * 15:
        page.keyboard.press(key)
        assert page.evaluate("document.activeElement.closest('dialog.log-popup') !== null"), key

    page.keyboard.press("Escape")
    expect(popup).to_be_hidden()
    expect(opener).to_be_focused()
    wait_for(lambda: page.evaluate("window.popupClosed.length"), 5, message="the close event")
    assert page.evaluate("window.popupClosed") == [failed.id]
    assert page.console_errors == []


def test_a_failed_run_page_is_red_folds_its_traceback_and_passes_axe(ctx, live_server, page, check_accessible):
    make_user(username="reader")
    failed, _ = seeded_failure()
    sign_in(page, f"{live_server}/runs/{failed.id}", "reader")
    expect(page.locator("#run-status-label")).to_have_text("Failed")
    red = "rgb(185, 28, 28)"
    assert page.locator("#run-status-label").evaluate("e => getComputedStyle(e).color") == red
    assert page.locator("#run-status").evaluate("e => getComputedStyle(e).borderTopColor") == red
    assert page.locator("#run-status .progress-fill").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(248, 113, 113)"
    traceback = page.locator("#run-traceback")
    expect(traceback.locator("pre")).to_be_hidden()
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_contain_text("line 88, in run")
    # The log opens at its end.
    assert page.locator("#log").evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight") < 5
    check_accessible(page)
    screenshot(page, "run-failed.png")
    # The header clock ticks.
    before = page.locator("#server-time").inner_text()
    expect(page.locator("#server-time")).not_to_have_text(before, timeout=3_000)
    expect(page.locator("#server-time")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    assert page.console_errors == []
