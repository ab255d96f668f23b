"""axe-core on the sign-in page and the top-level console pages: no serious or critical violation."""
import pytest

from tests.factories import make_user

PAGES = ["/dashboard/", "/jobs/", "/executions/", "/audit/", "/admin/users"]


def test_sign_in_page_is_accessible(live_server, page, check_accessible):
    page.goto(f"{live_server}/login")
    check_accessible(page)
    page.fill("#username", "nobody")
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector(".field-error, .flash-error")
    check_accessible(page)


@pytest.mark.parametrize("path", PAGES)
def test_console_pages_are_accessible(ctx, live_server, page, check_accessible, path):
    make_user(username="root", password="correct horse", role="superadmin")
    page.goto(f"{live_server}/login?next={path}")
    page.fill("#username", "root")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}{path}")
    check_accessible(page)
    assert page.console_errors == []
