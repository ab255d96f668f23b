"""The jobs list in a real browser: status filter toggles with back and forward, the find box
across history, the log icon turning read for one user only, and axe-core on the views."""
import os
import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.factories import make_job, make_user
from webapp.extensions import db
from webapp.models import Run, RunStatus, Trigger


def sign_in(page, live_server, username, path="/jobs/"):
    page.goto(f"{live_server}/login?next={quote(path)}")
    page.fill("#username", username)
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live_server + path.split("?")[0])))


def add_run(job, status, lines=0) -> Run:
    run = Run(job_id=job.id, trigger=Trigger.HAND, status=status, line_count=lines)
    db.session.add(run)
    db.session.commit()
    return run


def rows(page):
    return page.locator("#jobs-table tbody tr[id^=job-]")


@pytest.fixture
def estate(ctx):
    make_user(username="alice", password="correct horse")
    make_user(username="bob", password="correct horse")
    jobs = {"failed": make_job("Nightly failing"), "ok": make_job("Morning fine"), "never": make_job("Alpha never")}
    add_run(jobs["failed"], RunStatus.FAILED, lines=4)
    add_run(jobs["ok"], RunStatus.SUCCEEDED, lines=2)
    return jobs


def test_status_toggles_filter_and_back_and_forward_restore_them(estate, live_server, page):
    sign_in(page, live_server, "alice")
    expect(rows(page)).to_have_count(3)

    page.locator("label[for=status-failed]").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("Nightly failing")
    expect(page.locator("#status-failed")).to_be_checked()

    page.locator("label[for=status-never]").click()
    expect(page).to_have_url(re.compile(r"status=failed&status=never|status=never.*status=failed"))
    expect(rows(page)).to_have_count(2)

    page.go_back()
    expect(page).to_have_url(re.compile(r"status=failed$|status=failed&(?!.*never)"))
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#status-failed")).to_be_checked()
    expect(page.locator("#status-never")).not_to_be_checked()

    page.go_back()
    expect(rows(page)).to_have_count(3)
    expect(page.locator("#status-failed")).not_to_be_checked()

    page.go_forward()
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#status-failed")).to_be_checked()

    # The keyboard works the toggles too.
    page.locator("#status-failed").focus()
    page.keyboard.press("Space")
    expect(rows(page)).to_have_count(3)
    assert page.console_errors == []


def test_find_keeps_the_sort_and_back_restores_the_box(estate, live_server, page):
    sign_in(page, live_server, "alice", "/jobs/?sort=name&dir=desc")
    page.fill("#find", "in")  # Nightly failing, Morning fine (not Alpha never)
    expect(rows(page)).to_have_count(2)
    expect(page).to_have_url(re.compile(r"q=in"))
    expect(page).to_have_url(re.compile(r"sort=name&dir=desc"))
    expect(rows(page).first).to_contain_text("Nightly failing")  # still Z to A

    page.fill("#find", "alpha")
    expect(rows(page)).to_have_count(1)
    page.go_back()
    expect(rows(page)).to_have_count(2)
    expect(page.locator("#find")).to_have_value("in")
    page.go_back()
    expect(rows(page)).to_have_count(3)
    expect(page.locator("#find")).to_have_value("")
    assert page.console_errors == []


def test_the_log_icon_turns_read_for_the_reader_only(estate, live_server, page):
    run_id = db.session.query(Run.id).filter(Run.job_id == estate["failed"].id).scalar()
    sign_in(page, live_server, "alice")
    icon = page.locator(f"#log-{estate['failed'].id}")
    expect(icon).to_have_attribute("aria-label", f"Log of run #{run_id} (unread)")
    expect(icon).to_have_class(re.compile("log-unread"))

    icon.click()
    dialog = page.locator("dialog.log-popup")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"#{run_id}")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # The table refreshed itself when the popup closed: read now, for alice.
    expect(icon).to_have_attribute("aria-label", f"Log of run #{run_id}")
    expect(icon).to_have_class(re.compile("log-read"))
    page.reload()
    expect(page.locator(f"#log-{estate['failed'].id}")).to_have_attribute("aria-label", f"Log of run #{run_id}")

    # Not for bob.
    page.context.clear_cookies()
    sign_in(page, live_server, "bob")
    expect(page.locator(f"#log-{estate['failed'].id}")).to_have_attribute(
        "aria-label", f"Log of run #{run_id} (unread)")
    assert page.console_errors == []


def test_bulk_remove_asks_first_then_answers(estate, live_server, page):
    sign_in(page, live_server, "alice")
    page.check(f"#tick-{estate['ok'].id}")
    page.check(f"#tick-{estate['never'].id}")
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.dismiss() if len(asked) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.get_by_role("button", name="Remove", exact=True).click()
    assert asked and asked[0].startswith("Remove 2 ticked job(s)?")
    expect(page.locator(".flash")).to_have_count(0)  # dismissed: nothing happened
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("Removed 2 jobs")
    expect(page.locator(f"#job-{estate['ok'].id} .tag")).to_have_text("removed")


def test_tick_all_ticks_every_row_and_ticks_survive_the_self_refresh(estate, live_server, page):
    add_run(estate["never"], RunStatus.IN_PROGRESS)  # something active: the table polls
    sign_in(page, live_server, "alice")
    page.check("#tick-all")
    for job in estate.values():
        expect(page.locator(f"#tick-{job.id}")).to_be_checked()
    page.uncheck(f"#tick-{estate['ok'].id}")
    page.evaluate("document.getElementById('jobs-table').dataset.before = 'refresh'")
    expect(page.locator("#jobs-table:not([data-before])")).to_have_count(1, timeout=10_000)  # swapped anew
    expect(page.locator(f"#tick-{estate['failed'].id}")).to_be_checked()
    expect(page.locator(f"#tick-{estate['ok'].id}")).not_to_be_checked()
    assert page.console_errors == []


def test_the_table_wakes_up_when_a_next_fire_is_due(estate, live_server, page):
    from datetime import datetime, timedelta, timezone

    estate["ok"].next_fire_at = datetime.now(timezone.utc) + timedelta(seconds=3)
    db.session.commit()
    sign_in(page, live_server, "alice")
    page.evaluate("document.getElementById('jobs-table').dataset.before = 'due'")
    # Nothing is active, so no polling; the refresh comes once the fire is due (3 s + 2 s).
    expect(page.locator("#jobs-table:not([data-before])")).to_have_count(1, timeout=15_000)
    assert page.console_errors == []


@pytest.mark.parametrize("path", ["/jobs/", "/jobs/?type=system.selftest&status=failed&status=never"])
def test_the_list_and_a_type_view_are_accessible(estate, live_server, page, check_accessible, path):
    sign_in(page, live_server, "alice", path)
    expect(page.locator("#jobs-table")).to_be_visible()
    check_accessible(page)
    assert page.console_errors == []


@pytest.mark.parametrize("width", [1280, 390])
def test_short_values_do_not_wrap_and_a_narrow_table_scrolls_in_its_card(estate, live_server, page, width):
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live_server, "alice")
    expect(page.locator("#jobs-table")).to_be_visible()
    card = page.locator(".table-card")
    table = page.locator(".jobs-table")
    if width == 1280:
        # One line per row: every row as tall as a row of short values.
        heights = page.eval_on_selector_all("#jobs-table tbody tr", "rows => rows.map(r => r.offsetHeight)")
        assert max(heights) <= min(heights) + 1, heights
        assert table.bounding_box()["width"] <= card.bounding_box()["width"] + 1
    else:
        # The table is wider than the screen, but the page's content is not: the card scrolls.
        assert page.evaluate("document.querySelector('main').scrollWidth") <= width
        assert table.bounding_box()["width"] > card.bounding_box()["width"]
        assert page.evaluate("document.querySelector('.table-scroll').scrollWidth > "
                             "document.querySelector('.table-scroll').clientWidth")
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], f"jobs-list-{width}.png"),
                        full_page=True)
