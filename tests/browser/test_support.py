"""The support page in a real browser, with a real worker on the scripts queue and the scheduler:
a superadmin writes a script job in the CodeMirror editor, sees it run every second with a live
log, archives it, and no run starts after that."""
import os
import time

from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.conftest import wait_for
from tests.factories import make_user
from webapp.extensions import db
from webapp.models import Job, Run
from webapp.models.scripts import ScriptVersion, script_md5
from webapp.models.types import utcnow

TYPED = "n = int(config['times'])\nfor i in range(n):\nlog(f'tick {i} from the browser')\n"
# What the editor holds after typing TYPED: it indents the loop's body (and the line after) itself.
SAVED = "n = int(config['times'])\nfor i in range(n):\n    log(f'tick {i} from the browser')\n    "


def screenshot(page, name):
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def runs_of(job_id) -> list[Run]:
    db.session.expire_all()
    return db.session.scalars(select(Run).where(Run.job_id == job_id).order_by(Run.id)).all()


def test_write_a_script_in_the_editor_watch_it_run_and_archive_it(ctx, live_server, worker, start_process, page,
                                                                  check_accessible):
    make_user(username="root", password="correct horse")
    start_process("scheduler")

    page.goto(f"{live_server}/support/")
    expect(page.locator("h1")).not_to_have_text("Support: script jobs")  # signed out: nothing here (404)
    page.console_errors.clear()  # the browser's note of that 404
    page.goto(f"{live_server}/login")
    page.fill("#username", "root")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    page.goto(f"{live_server}/support/")
    expect(page.locator("h1")).to_have_text("Support: script jobs")
    page.get_by_role("link", name="New script job").click()
    expect(page.locator("h1")).to_have_text("New script job")

    # The editor replaces the textarea: line numbers, Python highlighting.
    editor = page.locator(".script-field .cm-editor")
    expect(editor).to_be_visible()
    expect(page.locator("#script")).to_be_hidden()
    page.get_by_label("Name", exact=True).fill("Browser ticks")
    page.get_by_label("Poll interval (s)").fill("1")
    editor.locator(".cm-content").click()
    page.keyboard.type(TYPED)
    expect(editor.locator(".cm-gutters .cm-lineNumbers")).to_contain_text("3")
    expect(editor.locator(".cm-content")).to_contain_text("tick {i} from the browser")
    assert editor.locator(".cm-content span[class]").count() > 3  # highlighted tokens
    # A configuration row added by support.js (no round trip), one blank row removed.
    rows = page.locator("#config-rows tbody tr")
    expect(rows).to_have_count(3)
    page.get_by_role("button", name="Add row").click()
    expect(rows).to_have_count(4)
    rows.nth(3).get_by_role("button", name="Remove").click()
    expect(rows).to_have_count(3)
    page.get_by_label("Key of row 1").fill("times")
    page.get_by_label("Value of row 1").fill("2")
    check_accessible(page)
    screenshot(page, "support-new.png")
    page.get_by_role("button", name="Create script job").click()

    expect(page.locator("h1")).to_have_text("Browser ticks")
    job = db.session.scalar(select(Job).where(Job.name == "Browser ticks"))
    assert ScriptVersion.current(job.id).script == SAVED
    expect(page.locator("#md5-current")).to_have_text(script_md5(SAVED))

    # Runs start on the poll interval; the page lists them as they come, and a run's log opens live.
    first = page.locator("#script-runs tbody tr.run-row").first
    expect(first).to_be_visible(timeout=20_000)
    wait_for(lambda: len(runs_of(job.id)) >= 2, 30, message="two polls")
    page.reload()
    screenshot(page, "support-detail.png")
    page.locator("#script-runs tbody tr.run-row a[data-log-popup]").first.click()
    popup = page.locator("dialog.log-popup")
    expect(popup).to_be_visible()
    expect(popup.locator("#popup-log")).to_contain_text("tick 1 from the browser", timeout=20_000)
    page.keyboard.press("Escape")
    expect(popup).to_be_hidden()

    page.goto(f"{live_server}/support/")
    row = page.locator(f"#script-{job.id}")
    expect(row).to_contain_text(script_md5(SAVED))
    expect(row.locator(".status")).to_be_visible()
    check_accessible(page)
    screenshot(page, "support-list.png")
    page.goto(f"{live_server}/support/{job.id}/edit")
    expect(page.locator(".script-field .cm-content")).to_contain_text("tick {i} from the browser")
    screenshot(page, "support-edit.png")

    # Archive (after confirming): no run starts after that.
    page.goto(f"{live_server}/support/{job.id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Archive").click()
    expect(page.locator("h1 .tag")).to_have_text("Archived")
    archived_at = utcnow()
    time.sleep(4)  # four poll intervals
    db.session.expire_all()
    started_since = db.session.scalar(select(func.count(Run.id)).where(Run.job_id == job.id,
                                                                        Run.created_at > archived_at))
    assert started_since == 0
    assert db.session.get(Job, job.id).next_fire_at is None
    page.goto(f"{live_server}/support/")
    expect(page.locator(f"#script-{job.id}")).to_contain_text("Archived")
    assert page.console_errors == []


def test_a_syntax_error_is_shown_at_the_script_and_two_versions_are_compared(ctx, live_server, page,
                                                                            check_accessible):
    from tests.factories import make_script_job
    from webapp.support import scripts

    root = make_user(username="root", password="correct horse")
    job = make_script_job("a = 1\nb = 2\n", name="Compared", saved_by=root)
    scripts.update(root, job, scripts.ScriptInput(name="Compared", script="a = 1\nb = '<b>3</b>'\n", poll_seconds=60))
    scripts.update(root, job, scripts.ScriptInput(name="Compared", script="a = 1\nb = 4\n", poll_seconds=60))
    page.goto(f"{live_server}/login")
    page.fill("#username", "root")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")

    page.goto(f"{live_server}/support/new")
    page.get_by_label("Name", exact=True).fill("Broken")
    page.locator(".script-field .cm-content").click()
    page.keyboard.type("x = 1\nif x\nlog(x)")
    page.get_by_role("button", name="Create script job").click()
    error = page.locator("[data-field=script] .field-error")
    expect(error).to_contain_text("Line 2")
    expect(page.locator(".script-field .cm-content")).to_contain_text("if x")  # what was typed is kept
    expect(page.get_by_label("Name", exact=True)).to_have_value("Broken")
    check_accessible(page)
    screenshot(page, "support-syntax-error.png")
    page.console_errors.clear()  # the browser's note of that page's 400 status

    page.goto(f"{live_server}/support/{job.id}")
    diff = page.locator("#script-diff")
    expect(diff.locator("h3")).to_have_text("Version 2 → version 3")  # the latest change, at first
    page.get_by_label("Compare version").select_option("1")
    page.get_by_label("with version").select_option("2")
    page.get_by_role("button", name="Show the difference").click()
    expect(diff.locator("h3")).to_have_text("Version 1 → version 2")
    expect(diff.locator(".diff-add")).to_have_text("added: +b = '<b>3</b>'")  # as text, not markup
    expect(diff.locator(".diff-del")).to_have_text("removed: -b = 2")
    assert page.url.endswith(f"/support/{job.id}/diff?a=1&b=2")  # swapped in place; the address says which
    check_accessible(page)
    screenshot(page, "support-diff.png")
    assert page.console_errors == []
