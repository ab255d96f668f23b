"""The audit page in Chromium: axe-core, filters that keep their state in the URL, and the CSV."""
import re

from tests.browser.test_admin import sign_in
from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import Role
from webapp.models.audit import record


def test_audit_page_filters_and_is_accessible(ctx, live_server, page, check_accessible):
    root = make_user(Role.SUPERADMIN, username="root", password="correct horse")
    job = make_job("Nightly import", domain=make_domain("Study"))
    for i in range(55):
        record("edit", "job", job, actor=root, before={"description": f"v{i}"}, after={"description": f"v{i + 1}"})
    record("remove", "job", job, actor=root, before={"state": "active"}, after={"state": "removed"})
    db.session.commit()
    sign_in(page, live_server, "/audit/")
    check_accessible(page)
    page.screenshot(path="/tmp/firetime-admin-shots_audit.png", full_page=True)
    assert page.locator("#audit-table tbody tr").count() == 50

    page.fill("#action", "remove")
    page.click("text=Filter")
    page.wait_for_url(re.compile(r".*action=remove.*"))
    page.wait_for_function("document.querySelectorAll('#audit-table tbody tr').length === 1")
    assert "removed" in page.inner_text("#audit-table")
    href = page.get_attribute("a.download", "href")
    assert "action=remove" in href
    csv = page.request.get(f"{live_server}{href}").text()
    assert csv.count("\n") == 2 and ",remove," in csv

    page.go_back()
    page.wait_for_function("document.querySelectorAll('#audit-table tbody tr').length === 50")

    page.goto(f"{live_server}/audit/?date_from=2026-02-31")
    assert "Not a day of the calendar" in page.inner_text("#date_from-error")
    check_accessible(page)
    assert page.console_errors == []
