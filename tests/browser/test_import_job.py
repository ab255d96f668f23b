"""A real browser, server, scheduler and worker: an administrator opens the Import jobs page,
creates an import job with its New import job form (the interval plan preselected, a wrong
subdirectory refused next to the field), and sees its first run, fired when the job is saved,
import the demo ODM file."""
import os
import re
from pathlib import Path

from flask import current_app
from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.browser.test_dashboard import sign_in
from tests.conftest import wait_for
from tests.factories import make_domain, make_user
from webapp import demo
from webapp.extensions import db
from webapp.models import Job, Run, RunStatus, Subject


def screenshot(page, name):
    """Saved when FIRETIME_SCREENSHOTS names a folder, to look at the layout."""
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def finished_run(job_id):
    db.session.expire_all()
    return db.session.scalar(select(Run).where(Run.job_id == job_id, Run.finished_at.isnot(None)))


def test_create_an_import_job_and_see_its_first_run_import_the_demo_file(ctx, live_server, worker, start_process,
                                                                         page, check_accessible):
    make_user(username="root", password="correct horse")
    study = make_domain("Study A")
    study.oid = demo.STUDY_A_OID
    db.session.commit()
    waiting = Path(demo.write_waiting_file())
    folder = waiting.parent
    start_process("scheduler")
    try:
        sign_in(page, live_server, "/jobs/?type=import_data")
        expect(page.locator("h1")).to_have_text("Import jobs")
        expect(page.locator("td.empty")).to_contain_text("No import jobs yet.")
        check_accessible(page)
        screenshot(page, "import-jobs-empty.png")

        page.get_by_role("link", name="New import job").first.click()
        expect(page.locator("h1")).to_have_text("New job")
        expect(page.get_by_label("Job type")).to_have_value("import_data")
        # The default plan of an import: every 15 minutes, the first run when the job is saved.
        expect(page.get_by_label("Schedule")).to_have_value("interval")
        expect(page.get_by_label("Every", exact=True)).to_have_value("15")
        expect(page.get_by_label("Unit")).to_have_value("minutes")
        expect(page.locator("#plan-preview ol.fire-times li")).to_have_count(5)
        expect(page.locator(".fact")).to_contain_text(current_app.config["IMPORT_DIR"])  # a superadmin sees the path
        expect(page.locator("#execution-note")).to_contain_text("imports into the study or site chosen here")

        page.get_by_label("Name", exact=True).fill("Study A visits import")
        page.get_by_label("Execution domain").select_option(label="Study A")
        page.get_by_label("Subdirectory").fill("../demo")
        page.get_by_role("button", name="Create job").click()
        error = page.locator("[data-field=param-subdirectory] .field-error")
        expect(error).to_have_text("A folder name may not contain “..”: imports read only inside the import directory.")
        expect(page.get_by_label("Subdirectory")).to_have_attribute("aria-invalid", "true")
        check_accessible(page)
        screenshot(page, "import-job-form-error.png")
        assert [e for e in page.console_errors if "status of 400" not in e] == []
        page.console_errors.clear()

        page.get_by_label("Subdirectory").fill(demo.DEMO_FOLDER)
        page.get_by_role("button", name="Create job").click()
        expect(page.locator("h1")).to_contain_text("Study A visits import")
        job = db.session.scalar(select(Job).where(Job.name == "Study A visits import"))

        # Saved is fired: the scheduler starts the first run at once, the worker imports the file.
        run = wait_for(lambda: finished_run(job.id), 60, message="the first run of the import job")
        assert run.status == RunStatus.SUCCEEDED, run.message
        assert not waiting.exists()
        assert [p.name for p in (folder / "processed").rglob("*.xml")] == [demo.WAITING_FILE]
        assert db.session.scalar(select(func.count(Subject.id)).where(Subject.domain_id == study.id)) == \
            demo.WAITING_SUBJECTS

        page.get_by_role("tab", name=re.compile("Latest executions")).click()
        expect(page.locator("#runs-table")).to_contain_text("Succeeded")
        screenshot(page, "import-job-first-run.png")
        page.goto(f"{live_server}/runs/{run.id}")
        expect(page.locator("body")).to_contain_text(f"{demo.WAITING_FILE}: {demo.WAITING_SUBJECTS} subjects")

        page.goto(f"{live_server}/jobs/?type=import_data")
        row = page.locator(f"#job-{job.id}")
        expect(row).to_contain_text("Study A")
        expect(row.locator(".oid")).to_have_text(demo.STUDY_A_OID)
        expect(row).to_contain_text(demo.DEMO_FOLDER)
        expect(row).to_contain_text("every 15 minutes")
        expect(row.locator(".status-icon, [class*=status]").first).to_be_visible()
        check_accessible(page)
        screenshot(page, "import-jobs.png")
        # The views swap heading, button and table together, and the address says which.
        page.locator("nav.type-tabs").get_by_role("link", name=re.compile("^All")).click()
        expect(page.locator("h1")).to_have_text("Jobs")
        expect(page.get_by_role("link", name="New job", exact=True)).to_be_visible()
        page.locator("nav.type-tabs").get_by_role("link", name=re.compile("^Import data")).click()
        expect(page.locator("h1")).to_have_text("Import jobs")
        expect(page).to_have_url(re.compile(r"type=import_data"))
        expect(page.get_by_role("link", name="New import job")).to_be_visible()
        page.go_back()
        expect(page.locator("h1")).to_have_text("Jobs")
        assert page.console_errors == []
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        folder.rmdir()
