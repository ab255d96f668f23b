"""The admin pages in Chromium: axe-core on each, and a superadmin creating a user, giving it an
API token (shown once) and revoking it."""
import pytest

from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import ApiToken, Role, User

SHOTS = "/tmp/firetime-admin-shots"


def sign_in(page, live_server, path="/admin/users"):
    page.goto(f"{live_server}/login?next={path}")
    page.fill("#username", "root")
    page.fill("#password", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}{path}")


@pytest.fixture
def estate(ctx):
    """A superadmin, a small domain tree with a job and a domain administrator with a token."""
    make_user(Role.SUPERADMIN, username="root", password="correct horse")
    study = make_domain("Study")
    site = make_domain("Site 1", parent=study)
    make_domain("Empty")
    make_job("Nightly import", domain=site)
    member = make_user(Role.DOMAIN_ADMIN, domain=study, username="study-admin", password="pw")
    ApiToken.issue(member, "export script")
    db.session.commit()
    return {"member": member.id, "study": study.id}


def test_admin_pages_are_accessible(ctx, estate, live_server, page, check_accessible):
    sign_in(page, live_server)
    for path in ("/admin/users", "/admin/users/new", f"/admin/users/{estate['member']}", "/admin/domains",
                 f"/admin/domains/{estate['study']}", "/admin/settings"):
        page.goto(f"{live_server}{path}")
        check_accessible(page)
        page.screenshot(path=f"{SHOTS}{path.replace('/', '_')}.png", full_page=True)
    # With messages next to the fields.
    page.goto(f"{live_server}/admin/settings")
    page.fill("#retention_days", "0")
    page.fill("#base_url", "ftp://x")
    page.click("text=Save settings")
    page.wait_for_selector("#retention_days-error")
    assert page.get_attribute("#retention_days", "aria-invalid") == "true"
    check_accessible(page)
    page.screenshot(path=f"{SHOTS}_settings_errors.png", full_page=True)
    page.goto(f"{live_server}/admin/users/new")
    page.click("text=Create user")
    page.wait_for_selector("#username-error")
    check_accessible(page)
    # A form sent back with its messages answers 400: the browser notes those two, and nothing else.
    assert len(page.console_errors) == 2 and all("status of 400" in e for e in page.console_errors)


def test_create_a_user_then_a_token_shown_once_then_revoke_it(ctx, estate, live_server, page, check_accessible):
    sign_in(page, live_server, "/jobs/")
    page.click("nav[aria-label=Main] >> text=Admin")
    page.click("text=New user")
    page.fill("#username", "night-robot")
    page.select_option("#role", "system")
    page.click("text=Create user")
    page.wait_for_selector("h1:has-text('night-robot')")
    assert "night-robot is created." in page.inner_text(".flash")

    page.fill("#name", "nightly export")
    page.click("text=Create token")
    page.wait_for_selector("#new-token")
    plain = page.inner_text("#new-token").strip()
    assert plain.startswith("ft_")
    check_accessible(page)
    page.screenshot(path=f"{SHOTS}_token_once.png", full_page=True)
    # It works on the API; shown once: a fresh look at the page no longer has it.
    assert page.request.get(f"{live_server}/api/scheduled-jobs",
                            headers={"Authorization": f"Bearer {plain}"}).status == 200
    assert page.url.endswith("/tokens")  # the answer to the POST, not a page one can come back to
    page.goto(page.url.removesuffix("/tokens"))
    assert plain not in page.content()
    row = page.locator("tr", has_text="nightly export")
    assert "Works" in row.inner_text()

    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation
    row.locator("button", has_text="Revoke").click()
    page.wait_for_selector(".flash:has-text('is revoked')")
    assert "Revoked" in page.locator("tr", has_text="nightly export").inner_text()
    assert page.request.get(f"{live_server}/api/scheduled-jobs",
                            headers={"Authorization": f"Bearer {plain}"}).status == 401
    with ctx.app_context():
        robot = db.session.scalar(db.select(User).where(User.username == "night-robot"))
        assert robot.role == Role.SYSTEM and [t.revoked_at is not None for t in
                                              db.session.scalars(db.select(ApiToken).where(ApiToken.user_id == robot.id))] == [True]
    assert page.console_errors == []
