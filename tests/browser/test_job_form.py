"""A real browser (the system's headless Chromium) creating a job through the New job form."""
import os
from datetime import datetime, timedelta

from playwright.sync_api import expect

from tests.factories import make_domain, make_job, make_user
from webapp.models.types import utcnow


def screenshot(page, name):
    """Saved when FIRETIME_SCREENSHOTS names a folder, to look at the layout."""
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def test_create_an_interval_job_seeing_its_fire_times_before_saving(ctx, live_server, page):
    make_user(username="alice", password="correct horse")
    make_domain("Study A")

    page.goto(f"{live_server}/jobs/")
    page.fill("#username", "alice")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")

    screenshot(page, "jobs.png")
    page.get_by_role("link", name="New job").click()
    expect(page.locator("h1")).to_have_text("New job")
    # Saving an empty form says what is missing, next to the field.
    page.get_by_role("button", name="Create job").click()
    expect(page.locator("[data-field=name] .field-error")).to_have_text("A name is required.")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    screenshot(page, "job-form-errors.png")
    # The refused form comes back with status 400, which Chromium logs as a console error.
    assert [e for e in page.console_errors if "status of 400" not in e] == []
    page.console_errors.clear()
    page.get_by_label("Name", exact=True).fill("Site polling self-test")
    page.get_by_label("Description").fill("Checks the workers every six hours.")
    page.get_by_label("By installation").check()
    expect(page.get_by_label("Execution domain")).to_be_hidden()  # by installation: no domain to choose
    page.get_by_label("Job type").select_option("system.selftest")
    page.get_by_label("Duration (seconds)").fill("1")

    # Choosing a schedule kind swaps in its fields ...
    expect(page.locator("#plan-preview")).to_contain_text("only when started by hand")
    page.get_by_label("Schedule").select_option("interval")
    expect(page.get_by_label("Every", exact=True)).to_be_visible()
    expect(page.locator("#plan-fields")).not_to_contain_text("Cron expression")
    # ... and the next five fire times follow what is typed, before anything is saved.
    page.get_by_label("Every", exact=True).fill("0")
    expect(page.locator("#plan-preview")).to_contain_text("Must be at least 1.")
    page.get_by_label("Every", exact=True).fill("6")
    page.get_by_label("Unit").select_option("hours")
    times = page.locator("#plan-preview ol.fire-times li")
    expect(times).to_have_count(5)
    expect(page.locator("#plan-preview")).to_contain_text("Every 6 hours")
    expect(page.locator("#plan-preview")).to_contain_text("Europe/Amsterdam")
    previewed = [datetime.fromisoformat(value) for value in
                 times.locator("time").evaluate_all("els => els.map(e => e.getAttribute('datetime'))")]
    assert previewed == [previewed[0] + timedelta(hours=6 * k) for k in range(5)]
    assert abs(previewed[0] - utcnow()) < timedelta(seconds=30)  # the first run would be now
    screenshot(page, "job-form.png")

    before = utcnow().replace(microsecond=0)
    page.get_by_role("button", name="Create job").click()
    expect(page.locator("h1")).to_contain_text("Site polling self-test")
    after = utcnow()
    expect(page.locator(".flash-success")).to_have_text("Job “Site polling self-test” is saved.")
    page.get_by_role("tab", name="Scheduling").click()
    fire_times = page.locator("#next-fires li time")
    expect(fire_times).to_have_count(5)
    # The first run is the moment of saving, then one every six hours.
    at = [datetime.fromisoformat(value) for value in
          fire_times.evaluate_all("els => els.map(e => e.getAttribute('datetime'))")]
    assert before <= at[0] <= after
    assert at == [at[0] + timedelta(hours=6 * k) for k in range(5)]
    expect(page.locator(".job-actions")).to_contain_text("Edit")
    screenshot(page, "job-page.png")

    page.get_by_role("link", name="Edit").click()
    expect(page.locator("h1")).to_have_text("Edit Site polling self-test")
    expect(page.get_by_label("Every", exact=True)).to_have_value("6")
    expect(page.locator("#plan-preview ol.fire-times li")).to_have_count(5)
    screenshot(page, "job-edit.png")
    # The content security policy blocked nothing the pages need.
    assert page.console_errors == []


def sign_in(page, live_server, username):
    page.goto(f"{live_server}/jobs/")
    page.fill("#username", username)
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")


def test_two_admins_edit_one_job_and_the_second_save_is_refused_with_what_changed(ctx, live_server, page):
    make_user(username="alice", password="correct horse")
    make_user(username="bob", password="correct horse")
    job = make_job(name="Nightly export", description="Every night.",
                   params={"duration": 0.0, "lines_per_second": 0.0, "fail_at_end": False, "output_csv": False})
    bob = page.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server, "alice")
    sign_in(bob, live_server, "bob")
    for admin in (page, bob):
        admin.goto(f"{live_server}/jobs/{job.id}/edit")
        expect(admin.locator("h1")).to_have_text("Edit Nightly export")

    page.get_by_label("Description").fill("Every night, and at noon.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash-success")).to_have_text("Job “Nightly export” is saved.")

    bob.get_by_label("Name", exact=True).fill("Nightly export (all sites)")
    bob.get_by_role("button", name="Save changes").click()
    conflict = bob.locator("#edit-conflict")
    expect(conflict).to_contain_text("Not saved: this job was changed since you opened it.")
    expect(conflict).to_contain_text("Changed by alice at ")
    expect(conflict).to_contain_text("Description: Every night. → Every night, and at noon.")
    expect(conflict.locator(".your-changes")).to_have_text("Name: Nightly export (all sites)")
    # The form shows the job as alice left it; bob types his change again and saves.
    expect(bob.get_by_label("Description")).to_have_value("Every night, and at noon.")
    expect(bob.get_by_label("Name", exact=True)).to_have_value("Nightly export")
    screenshot(bob, "job-edit-conflict.png")
    bob.get_by_label("Name", exact=True).fill("Nightly export (all sites)")
    bob.get_by_role("button", name="Save changes").click()
    expect(bob.locator("h1")).to_contain_text("Nightly export (all sites)")
    expect(bob.locator("body")).to_contain_text("Every night, and at noon.")
    # The refused save answered 409, which Chromium logs as a console error.
    assert page.console_errors == []
