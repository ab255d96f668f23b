"""What a review of the support page in a real browser found: list cells broken over two lines,
the no-JavaScript script field a third of the card wide, a next fire time left behind while the
runs refresh, and a compared pair of versions the address (and the back button) did not keep."""
from datetime import timedelta

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.factories import make_script_job, make_user
from webapp.extensions import db
from webapp.models import Role, Run, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.scheduling import sync
from webapp.support import scripts

# The lines a cell's text takes: its text boxes grouped by vertical overlap (a code font and the
# body font on one line have different tops, but they overlap).
LINES = """(el) => {
  const rects = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    if (!walker.currentNode.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(walker.currentNode);
    for (const rect of range.getClientRects()) if (rect.width > 0) rects.push(rect);
  }
  rects.sort((a, b) => a.top - b.top);
  let lines = 0, bottom = -Infinity;
  for (const rect of rects) {
    if (rect.top >= bottom - 1) { lines += 1; bottom = rect.bottom; } else bottom = Math.max(bottom, rect.bottom);
  }
  return lines;
}"""


@pytest.fixture
def browser_without_js():
    """A page of a browser with JavaScript turned off."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
        yield context.new_page()
        browser.close()


def sign_in(page, live_server):
    make_user(username="root", password="correct horse")
    page.goto(f"{live_server}/login")
    page.fill("#username", "root")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")


def test_each_cell_of_the_list_holds_one_line(ctx, live_server, page):
    robot = make_user(Role.SYSTEM, username="api-bot")
    for n in range(12):  # enough rows and long names for the table to be tight
        job = make_script_job("log(1)", name=f"Count the runs of the last hour, variant {n}", run_as=robot,
                              plan={"kind": "poll", "seconds": 60, "anchor": utcnow().isoformat()})
        run = Run(job_id=job.id, trigger=Trigger.HAND, status=RunStatus.WARNINGS, started_at=utcnow(),
                  finished_at=utcnow())
        db.session.add(run)
        db.session.commit()
        job.last_run_id, job.last_status = run.id, run.status
        job.next_fire_at = utcnow().replace(microsecond=0) + timedelta(seconds=60)
        db.session.commit()
    sign_in(page, live_server)
    page.goto(f"{live_server}/support/")
    row = page.locator("#scripts-table tbody tr").first
    expect(row.locator("td").nth(5)).to_contain_text("Succeeded with warnings")
    for index, what in ((2, "run-as user"), (4, "MD5 and version"), (5, "last run"), (6, "next fire"), (7, "Run now")):
        assert row.locator("td").nth(index).evaluate(LINES) == 1, f"the {what} is broken over lines"


def test_without_javascript_the_script_field_is_as_wide_as_its_card(ctx, live_server, browser_without_js):
    page = browser_without_js
    sign_in(page, live_server)
    page.goto(f"{live_server}/support/new")
    field = page.locator("#script").bounding_box()
    card = page.locator("[data-field=script]").bounding_box()
    assert field["width"] > 0.95 * card["width"], (field, card)


def test_the_next_fire_time_follows_the_runs_while_the_page_is_open(ctx, live_server, page):
    job = make_script_job("log(1)", name="Polled", plan={"kind": "poll", "seconds": 5, "anchor": utcnow().isoformat()})
    job.next_fire_at = utcnow().replace(microsecond=0) + timedelta(seconds=5)
    db.session.commit()
    sign_in(page, live_server)
    page.goto(f"{live_server}/support/{job.id}")
    later = utcnow().replace(microsecond=0) + timedelta(hours=3)
    job.next_fire_at = later  # as the scheduler moves it on after a fire
    db.session.commit()
    shown = later.astimezone(sync.timezone()).strftime("%Y-%m-%d %H:%M:%S")
    expect(page.locator("#fires")).to_contain_text(f"Next fire: {shown}", timeout=8000)


def test_a_compared_pair_is_in_the_address_and_back_returns_to_the_one_before(ctx, live_server, page):
    root = make_user(username="saver")
    job = make_script_job("a = 1\n", name="Compared", saved_by=root)
    for text in ("a = 2\n", "a = 3\n"):
        scripts.update(root, job, scripts.ScriptInput(name="Compared", script=text, poll_seconds=60))
    sign_in(page, live_server)
    page.goto(f"{live_server}/support/{job.id}")
    diff = page.locator("#script-diff h3")
    expect(diff).to_have_text("Version 2 → version 3")
    page.get_by_label("Compare version").select_option("1")
    page.get_by_label("with version").select_option("3")
    page.get_by_role("button", name="Show the difference").click()
    expect(diff).to_have_text("Version 1 → version 3")
    assert page.url.endswith(f"/support/{job.id}/diff?a=1&b=3")
    page.reload()  # the address shows the same pair
    expect(diff).to_have_text("Version 1 → version 3")
    page.go_back()
    expect(diff).to_have_text("Version 2 → version 3")
    assert db.session.scalars(select(Run)).all() == []  # looking runs nothing
