"""The queues page in a real browser: accessible, sort and filter swap one list and keep its
state in the address bar, the running list follows progress by itself, cancel asks first."""
import re
from datetime import timedelta

from playwright.sync_api import expect

from tests.browser.test_dashboard import sign_in, status_of
from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import Run, RunStatus, Trigger
from webapp.models.types import utcnow


def test_queues_page_sorts_filters_updates_and_cancels(ctx, live_server, page, check_accessible):
    make_user(username="root", password="correct horse")
    study = make_domain("Study A")
    now = utcnow()
    soon = (now + timedelta(hours=1)).replace(microsecond=0)
    plan = {"kind": "interval", "every": 2, "unit": "hours", "anchor": soon.isoformat()}
    busy = make_job("Nightly import", domain=study)
    alpha = make_job("Alpha export", next_fire_at=soon, plan=plan)
    make_job("Zulu export", next_fire_at=soon + timedelta(minutes=1), plan=plan)
    running = Run(job_id=busy.id, trigger=Trigger.PLAN, status=RunStatus.IN_PROGRESS, created_at=now,
                  enqueued_at=now, started_at=now, progress=10, progress_message="Reading", worker_name="w-1")
    waiting = Run(job_id=busy.id, trigger=Trigger.HAND, status=RunStatus.QUEUED, created_at=now)
    db.session.add_all([running, waiting])
    db.session.commit()

    sign_in(page, live_server, "/queues/")
    panel = page.locator("#queue-default")
    expect(panel.get_by_role("heading", name="Queue default")).to_be_visible()
    expect(page.locator("#q-default-running")).to_contain_text("10 % · Reading")
    expect(page.locator("#q-default-waiting")).to_contain_text(f"Run #{running.id} of the same job")
    expect(page.locator("#workers-panel")).to_contain_text("No worker is running")
    check_accessible(page)

    # Sort the planned list by job, descending: only that list is swapped, the URL says it.
    planned = page.locator("#q-default-planned")
    planned.get_by_role("link", name="Job", exact=True).click()
    expect(planned.locator("th[aria-sort=ascending]")).to_contain_text("Job")
    planned.get_by_role("link", name=re.compile(r"^Job\W*$")).click()
    expect(page.locator("#q-default-planned th[aria-sort=descending]")).to_contain_text("Job")
    expect(page).to_have_url(re.compile(r"queue=default.*list=planned.*sort=job.*dir=desc|sort=job&dir=desc.*queue=default"))
    rows = page.locator("#q-default-planned tbody tr")
    expect(rows.first).to_contain_text("Zulu export")

    # Filter under the column header, then Apply Filter.
    page.locator("#q-default-planned-f-job").fill("alpha")
    page.locator("#q-default-planned").get_by_role("button", name="Apply Filter").click()
    expect(page.locator("#q-default-planned tbody tr")).to_have_count(1)
    expect(page.locator("#q-default-planned tbody tr")).to_contain_text("Alpha export")
    expect(page).to_have_url(re.compile(r"f_job=alpha"))
    page.reload()  # the state lives in the URL
    expect(page.locator("#q-default-planned-f-job")).to_have_value("alpha")
    expect(page.locator("#q-default-planned tbody tr")).to_have_count(1)

    # The running list follows the progress on its own (polled every 3 s).
    running.progress, running.progress_message = 70, "Writing"
    db.session.commit()
    expect(page.locator("#q-default-running")).to_contain_text("70 % · Writing", timeout=8000)
    check_accessible(page)

    # Cancel the waiting run, confirmed: recorded cancelled by the user.
    page.once("dialog", lambda confirm: confirm.accept())
    page.locator("#q-default-waiting").get_by_role("button", name=f"Cancel run #{waiting.id}").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Run #{waiting.id} of Nightly import is cancelled")
    assert status_of(waiting.id) == RunStatus.CANCELLED

    # Skip the planned occurrence, confirmed.
    page.once("dialog", lambda confirm: confirm.accept())
    page.locator("#q-default-planned").get_by_role("button", name=re.compile("^Skip the occurrence of Alpha")).click()
    expect(page.locator(".flash-success")).to_contain_text("The occurrence of Alpha export at")
    db.session.expire_all()
    assert db.session.get(type(alpha), alpha.id).next_fire_at == soon + timedelta(hours=2)
    assert page.console_errors == []


def test_the_queues_page_is_no_wider_than_a_phone(ctx, live_server, page):
    """Its lists' screen-reader labels sit in far columns of tables that scroll in their panel; the
    panel did not contain them, and the page was 775 px wide at 390 px."""
    make_user(username="root", password="correct horse")
    busy = make_job("Nightly import", domain=make_domain("Study A"))
    now = utcnow()
    db.session.add_all([Run(job_id=busy.id, trigger=Trigger.PLAN, status=RunStatus.IN_PROGRESS, created_at=now,
                            enqueued_at=now, started_at=now, worker_name="w-1"),
                        Run(job_id=busy.id, trigger=Trigger.HAND, status=RunStatus.QUEUED, created_at=now)])
    db.session.commit()
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(page, live_server, "/queues/")
    expect(page.locator("#q-default-waiting")).to_contain_text("of the same job")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
