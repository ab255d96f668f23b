"""The envelopes page in a real browser with a real worker (issue 11): upload the sample envelope, watch
it go Success (active) → Success with its jobs open, open a job's statistics and the notifications,
roll it back (confirmed) and see Rolled back; axe on each state."""
import os
import re
from pathlib import Path

from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.test_dashboard import sign_in
from tests.factories import make_user
from webapp.extensions import db
from webapp.models import Domain
from webapp.models.linkage import Envelope

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "samples" / "sample-envelope.zip"


def shoot(page, name):
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def test_upload_watch_expand_notifications_and_roll_back(ctx, live_server, worker, page, check_accessible):
    make_user(username="root", password="correct horse")
    db.session.add(Domain(name="Registry B", kind="linkage"))
    db.session.commit()
    sign_in(page, live_server, "/envelopes/")
    expect(page.get_by_label("Linkage project")).to_have_value(re.compile(r"\d+"))  # the only project, chosen
    check_accessible(page)
    shoot(page, "envelopes-empty.png")

    # Upload: the page comes back with the envelope on top, processing.
    page.get_by_label("Zip or CSV file").set_input_files(str(SAMPLE))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".flash-success")).to_contain_text("“sample-envelope.zip” is uploaded to Registry B")
    envelope_id = db.session.scalar(select(Envelope.id).where(Envelope.name == "sample-envelope.zip"))
    body = page.locator(f"#env-{envelope_id}")
    expect(body.locator(".env-row .env-status")).to_have_text("Success (active)")
    expect(page.locator("#env-live")).to_contain_text("sample-envelope.zip")  # processing now

    # Open its jobs while it runs; the row stays open as it refreshes itself.
    expand = body.get_by_role("button", name=f"Jobs of envelope #{envelope_id}")
    expand.click()
    expect(body.locator("tbody.job-body")).to_have_count(5)
    expect(page.locator(f"#env-{envelope_id}-expand")).to_be_focused()  # focus survives the swap
    check_accessible(page)
    shoot(page, "envelopes-active.png")
    expect(body.locator(".env-row .env-status")).to_have_text("Success", timeout=180_000)
    expect(body.locator("tbody.job-body")).to_have_count(5)
    steps = body.locator("tbody.job-body tr.job-row")
    for index, step in enumerate(("validate", "load", "match", "group", "report")):
        expect(steps.nth(index)).to_contain_text(step)
        expect(steps.nth(index).locator(".env-status")).to_have_text("Success")
    expect(body.get_by_role("link", name=re.compile(r"\.csv of envelope"))).not_to_have_count(0)  # the report files
    expect(page.locator("#env-live")).to_contain_text("No envelope is being processed.")

    # A job opens to its statistics.
    load = body.locator("tbody.job-body").nth(1)
    load.get_by_role("button", name=re.compile(r"Statistics of job #\d+")).click()
    expect(load.locator("tr.job-stats")).to_contain_text("rows_read")
    expect(load.locator("tr.job-stats")).to_contain_text("50")
    check_accessible(page)
    shoot(page, "envelopes-expanded.png")

    # The notifications popup; Esc closes it and focus goes back to the button.
    notes = body.get_by_role("link", name=f"Notifications of envelope #{envelope_id}")
    notes.click()
    dialog = page.locator("#audit-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(f"Notifications of envelope #{envelope_id} (sample-envelope.zip)")
    expect(dialog).to_contain_text(re.compile(r"Nothing was raised|match|load"))
    check_accessible(page)
    shoot(page, "envelopes-notifications.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(notes).to_be_focused()

    # Roll it back, confirmed: the rollback is a job of the envelope, and it ends Rolled back.
    questions = []
    page.once("dialog", lambda confirm: (questions.append(confirm.message), confirm.accept()))
    body.get_by_role("button", name=f"Rollback envelope #{envelope_id}").click()
    expect(page.locator(".flash-success")).to_contain_text(f"The rollback of envelope #{envelope_id} is queued as job")
    assert questions and questions[0].startswith(f"Roll back envelope #{envelope_id} (sample-envelope.zip)?")
    body = page.locator(f"#env-{envelope_id}")
    expect(body.locator(".env-row .env-status")).to_have_text("Rolled back", timeout=120_000)
    expect(body.locator(".env-row td.num").first).to_have_text("0")  # no records left
    rollback = body.get_by_role("button", name=f"Rollback envelope #{envelope_id}")
    expect(rollback).to_be_disabled()
    expect(body.locator(".env-refused")).to_have_attribute("title", "It is rolled back already.")
    check_accessible(page)
    shoot(page, "envelopes-rolled-back.png")

    # All jobs: the six runs (five steps and the rollback), newest start first.
    page.get_by_role("link", name="All jobs").click()
    expect(page).to_have_url(re.compile(r"view=jobs"))
    expect(page.locator("#env-list tbody.job-body")).to_have_count(6)
    expect(page.locator("#env-list tbody.job-body").first).to_contain_text("rollback")
    check_accessible(page)
    shoot(page, "envelopes-all-jobs.png")
    assert page.console_errors == []
