"""Every console page fits the window, on a laptop (1280 px) and on a phone (390 px), even with a
job whose name is 100 characters without a space: the page itself never scrolls sideways (a
wide table scrolls inside its own card), and a long name is cut or wrapped inside its cell."""
import os
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.test_dashboard import sign_in
from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import Role, Run, RunStatus, Trigger
from webapp.models.audit import record
from webapp.models.types import utcnow

LONG_NAME = "Nightly" + "X" * 87 + "import"  # 100 characters, no space to break at
LONG_USER = "a" * 60  # a domain administrator's name
WIDTHS = (1280, 390)


@pytest.fixture
def estate(ctx):
    root = make_user(Role.SUPERADMIN, username="root", password="correct horse")
    study = make_domain("Study A")
    make_user(Role.DOMAIN_ADMIN, domain=study, username=LONG_USER)
    job = make_job(LONG_NAME, domain=study, next_fire_at=utcnow() + timedelta(hours=1))
    make_job("Housekeeping")
    now = utcnow()
    for n in range(3):
        failed = Run(job_id=job.id, trigger=Trigger.HAND, requested_by_id=root.id, status=RunStatus.FAILED,
                     created_at=now - timedelta(hours=n + 1), started_at=now - timedelta(hours=n + 1),
                     finished_at=now - timedelta(hours=n + 1) + timedelta(seconds=40),
                     message="Import file missing: /data/" + "deep/" * 30 + "in.xml", error_count=1)
        db.session.add(failed)
    db.session.add(Run(job_id=job.id, trigger=Trigger.PLAN, status=RunStatus.IN_PROGRESS, created_at=now,
                       started_at=now, progress=40))
    db.session.flush()
    record("edit", "job", job, actor=root, object_name=job.name, domain_id=job.domain_id,
           before={"name": "Short"}, after={"name": LONG_NAME})
    record("retry", "run", failed, actor=root, object_name=job.name, domain_id=job.domain_id,
           message=f"Retry of run #{failed.id} of {LONG_NAME}")
    db.session.commit()
    return job


def pages(job):
    """Page name -> (path, a long text it shows)."""
    name = LONG_NAME[:20]
    return {"dashboard": ("/dashboard/", name), "jobs": ("/jobs/", name), "executions": ("/executions/", name),
            "audit": ("/audit/", name), "users": ("/admin/users", LONG_USER), "job": (f"/jobs/{job.id}", name)}


def shoot(page, name):
    if os.environ.get("FIRETIME_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FIRETIME_SCREENSHOTS"], name), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_no_page_is_wider_than_the_window(estate, live_server, page, width):
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live_server, "/dashboard/")
    too_wide = {}
    for name, (path, text) in pages(estate).items():
        page.goto(f"{live_server}{path}")
        expect(page.locator("main")).to_contain_text(text)  # the long name is on the page
        page.wait_for_load_state("networkidle")
        shoot(page, f"layout-{name}-{width}.png")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            too_wide[name] = scroll_width
    assert too_wide == {}, f"pages wider than {width} px: {too_wide}"
    assert page.console_errors == []


def test_the_executions_buttons_are_in_view_at_1280(estate, live_server, page):
    sign_in(page, live_server, "/executions/")
    table = page.locator("main table")
    for button in (table.get_by_role("button", name="Retry").first, table.get_by_role("link", name="Audit").first):
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box and box["x"] + box["width"] <= 1280, box
