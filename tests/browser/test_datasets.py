"""Datasets in a real browser with a real worker: the items tree (find, a whole item group at
once, another domain's items after a change of domain), Export now to the run's live page, and
the file in the archive, downloaded."""
import os
import re

from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.test_dashboard import sign_in
from tests.integration.test_export import load
from tests.integration.test_import_data import import_dir, study  # noqa: F401  (fixture)
from tests.factories import make_user
from webapp.extensions import db
from webapp.models import Dataset, RunFile

SMALL = {("B-1", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.HR"): "70"}


def shoot(page, name):
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


def test_define_a_dataset_export_it_now_and_download_it_from_the_archive(ctx, import_dir, live_server, page,
                                                                         check_accessible, request):
    load(import_dir, study("STUDY-A", name="Study A"))
    load(import_dir, study("STUDY-B", name="Study B"), SMALL, study_oid="STUDY-B", job_name="Import B")
    request.getfixturevalue("worker")  # started once the data is in (the imports ran in this process)
    make_user(username="root", password="correct horse")
    sign_in(page, live_server, "/datasets/")
    expect(page.locator("#datasets-table")).to_contain_text("No datasets yet.")
    page.get_by_role("link", name="New dataset").click()
    # The click returns once the new page starts loading; htmx wires the domain field up when it
    # has loaded (a choice made before that, on a busy machine, asked for nothing).
    expect(page).to_have_url(re.compile(r"/datasets/new$"))
    page.wait_for_load_state()

    # Choosing a domain brings its items; another domain replaces them.
    page.get_by_label("Domain").select_option(label="Study B")
    expect(page.locator("#dataset-items input[name=items]")).to_have_count(1)
    page.get_by_label("Domain").select_option(label="Study A")
    boxes = page.locator("#dataset-items input[name=items]")
    expect(boxes).to_have_count(7)
    expect(page.get_by_role("button", name="Show this domain's items")).to_be_hidden()  # the no-script way

    # Find narrows the list; the group's box ticks what is shown of it.
    page.get_by_label("Find items").fill("i.hr")
    expect(page.locator("#dataset-items li:visible")).to_have_count(2)
    page.get_by_label("All items of SE.VISIT / F.VS / IG.VS").click()  # ticks those shown: I.HR
    page.get_by_label("Find items").fill("")
    expect(page.locator("#dataset-items li:visible")).to_have_count(7)
    expect(page.get_by_label("All items of SE.VISIT / F.VS / IG.VS")).to_have_js_property("indeterminate", True)
    page.locator("li", has_text="I.NOTE").filter(has=page.locator("input")).first.locator("input").check()
    expect(page.locator("#dataset-items input[name=items]:checked")).to_have_count(2)
    expect(page.locator("[data-chosen-count]")).to_have_text("2")
    page.get_by_label("Name").fill("Vitals")
    page.get_by_label("Description").fill("Heart rate and notes")
    check_accessible(page)
    shoot(page, "dataset-form.png")
    page.get_by_role("button", name="Create dataset").click()

    expect(page.locator(".flash-success")).to_contain_text("Dataset “Vitals” created.")
    expect(page.locator("#item-count")).to_have_text("2")
    expect(page.locator("#subjects-covered")).to_have_text("2")  # S-001 and S-002 have baseline notes
    check_accessible(page)
    shoot(page, "dataset-page.png")

    # Export now: the run's page follows it live until its file is there.
    page.get_by_label("Format").select_option(label="JSON")
    page.get_by_role("button", name="Export now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(page.locator(".files")).to_contain_text("Vitals_", timeout=30_000)
    dataset = db.session.scalar(select(Dataset))
    file = db.session.scalar(select(RunFile).where(RunFile.dataset_id == dataset.id))

    page.goto(f"{live_server}/archive/")
    row = page.locator(f"#file-{file.id}")
    expect(row).to_contain_text("Vitals")
    expect(row).to_contain_text("JSON")
    expect(row).to_contain_text("Manual extracts: Study A")
    check_accessible(page)
    shoot(page, "archive.png")
    page.get_by_label("Format").select_option(label="CSV")
    expect(page.locator("#archive-table")).to_contain_text("No exported file matches these filters.")
    expect(page).to_have_url(re.compile(r"format=csv"))
    page.go_back()
    expect(row).to_be_visible()
    with page.expect_download() as download:
        row.get_by_role("link", name=file.name).click()
    assert download.value.suggested_filename == file.name
    assert os.path.getsize(download.value.path()) == file.size
