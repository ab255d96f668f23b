"""What a review of the envelopes page found in a real browser: the page stays within a phone's width
with its rows listed, and a superadmin's navigation (twelve links) fits on one line of a laptop."""
import pytest

from tests.browser.test_dashboard import sign_in
from tests.factories import make_user
from webapp.extensions import db
from webapp.linkage import upload
from webapp.models import Domain, Role


@pytest.fixture
def listed(ctx):
    """A superadmin and a project listing a few envelopes (refused ones: each row has its options)."""
    root = make_user(Role.SUPERADMIN, username="root", password="correct horse")
    project = Domain(name="Registry R", kind="linkage")
    db.session.add(project)
    db.session.commit()
    return [upload.record_refused(root, project, f"people-{n}.csv", "The file is larger than the limit of 200 MB.")
            for n in range(3)]


@pytest.mark.parametrize("view", ["envelopes", "jobs", "one envelope"])
def test_the_envelopes_page_is_no_wider_than_a_phone(listed, live_server, page, view):
    """The rows' screen-reader labels sit in far columns of a table that scrolls in its card; they
    made the whole page 900 px wide at 390 px, as the card did not contain them."""
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(page, live_server, "/envelopes/")
    path = {"envelopes": "/envelopes/", "jobs": "/envelopes/?view=jobs", "one envelope": f"/envelopes/{listed[0].id}"}
    page.goto(f"{live_server}{path[view]}")
    page.wait_for_load_state("networkidle")
    assert "people-" in page.locator("main").inner_text() or view == "jobs"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.console_errors == []


def test_a_superadmins_twelve_links_fit_on_one_line_at_1280(listed, live_server, page):
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in(page, live_server, "/envelopes/")
    links = page.locator("header nav a")
    assert links.count() == 12
    boxes = [links.nth(i).bounding_box() for i in range(links.count())]
    assert len({round(box["y"]) for box in boxes}) == 1, "the navigation wraps"
    assert all(box["x"] + box["width"] <= 1280 for box in boxes)
    clock, who = page.locator(".server-time").bounding_box(), page.locator(".who").bounding_box()
    assert clock["x"] + clock["width"] <= 1280 and who["x"] + who["width"] <= 1280
    assert page.locator("header").bounding_box()["height"] < 60
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
