"""The live log popup's content (GET /runs/<id>/popup), the log's filter and search, and the
download of a log as text: what a reader gets, and who may get it."""
import re
import time

import pytest
from sqlalchemy import insert, select

from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db, redis_client
from webapp.execution import livelog
from webapp.models import LogRead, Role, Run, RunLogLine, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.runs import logs

HTMX = {"HX-Request": "true"}
LEVELS = ("debug", "info", "warning", "error")


def finished_run(job=None, lines=0, status=RunStatus.SUCCEEDED, level_of=lambda seq: "info",
                 message_of=lambda seq: f"line {seq}", **extra) -> Run:
    """A finished run whose `lines` lines are in the database, as the worker stores them."""
    run = Run(job_id=(job or make_job()).id, trigger=Trigger.HAND, status=status, started_at=utcnow(),
              finished_at=utcnow(), line_count=lines, progress=100, **extra)
    db.session.add(run)
    db.session.commit()
    at = utcnow()
    for start in range(1, lines + 1, 20_000):
        db.session.execute(insert(RunLogLine), [
            {"run_id": run.id, "seq": seq, "at": at, "level": level_of(seq), "message": message_of(seq)}
            for seq in range(start, min(start + 20_000, lines + 1))])
    db.session.commit()
    return run


def shown_lines(body) -> list[str]:
    return re.findall(r'<li class="log-line[^"]*">.*?<span class="msg">(.*?)</span></li>', body, flags=re.S)


def popup(client, run_id, **args):
    return client.get(f"/runs/{run_id}/popup", query_string=args, headers=HTMX)


# --- the popup's content -------------------------------------------------------------------------

def test_a_run_with_100000_lines_opens_with_its_last_lines_in_a_bounded_fragment(ctx, client, login_as):
    login_as(make_user())
    run = finished_run(lines=100_000)
    started = time.perf_counter()
    response = popup(client, run.id)
    took = time.perf_counter() - started
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    lines = shown_lines(body)
    assert lines == [f"line {seq}" for seq in range(100_001 - logs.POPUP_LINES, 100_001)]
    assert len(body) < 200_000, f"{len(body)} bytes for {logs.POPUP_LINES} lines"
    assert "(100000 lines, 500 shown)" in body
    assert f'hx-get="/runs/{run.id}/popup?before={100_001 - logs.POPUP_LINES}"' in body  # "load earlier"
    print(f"popup of a 100,000-line log: {took * 1000:.0f} ms, {len(body)} bytes")


def test_load_earlier_in_the_popup_gives_the_lines_before_with_the_next_link_above(ctx, client, login_as):
    login_as(make_user())
    run = finished_run(lines=1200)
    fragment = client.get(f"/runs/{run.id}/popup?before=701",
                          headers={**HTMX, "HX-Target": "popup-log-earlier"}).get_data(as_text=True)
    assert shown_lines(fragment) == [f"line {seq}" for seq in range(201, 701)]
    assert fragment.lstrip().startswith('<li class="log-more" id="popup-log-earlier">')
    assert f'hx-get="/runs/{run.id}/popup?before=201"' in fragment
    last = client.get(f"/runs/{run.id}/popup?before=201",
                      headers={**HTMX, "HX-Target": "popup-log-earlier"}).get_data(as_text=True)
    assert shown_lines(last) == [f"line {seq}" for seq in range(1, 201)] and "log-earlier" not in last


def test_the_popup_of_a_live_run_streams_from_the_run_stream(ctx, client, login_as):
    login_as(make_user())
    run = Run(job_id=make_job().id, trigger=Trigger.HAND, status=RunStatus.IN_PROGRESS, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    livelog.set_progress(redis_client.conn, run.id, 40, "reading")
    body = popup(client, run.id).get_data(as_text=True)
    assert f'sse-connect="/runs/{run.id}/stream"' in body and 'sse-swap="earlier,line"' in body
    assert 'sse-swap="progress"' in body and 'aria-valuenow="40"' in body and "reading" in body
    assert f'hx-get="/runs/{run.id}/popup"' in body and 'hx-trigger="sse:end"' in body  # the whole log at the end
    assert 'data-live-filter="#popup-log"' in body  # filtered in the browser while live


def test_without_htmx_the_popup_address_leads_to_the_run_page(ctx, client, login_as):
    login_as(make_user())
    run = finished_run(lines=3)
    response = client.get(f"/runs/{run.id}/popup?level=error&q=x")
    assert response.status_code == 302
    assert response.location == f"/runs/{run.id}?level=error&q=x"


def test_opening_the_popup_marks_the_log_read_for_that_user_only(ctx, client, login_as):
    reader, other = make_user(), make_user()
    run = finished_run(lines=7)
    login_as(reader)
    popup(client, run.id)
    reads = {row.user_id: row.lines_read for row in db.session.scalars(select(LogRead))}
    assert reads == {reader.id: 7}
    assert other.id not in reads


def test_the_run_page_marks_the_log_read_too(ctx, client, login_as):
    reader = make_user()
    run = finished_run(lines=4)
    login_as(reader)
    client.get(f"/runs/{run.id}")
    assert db.session.get(LogRead, (reader.id, run.id)).lines_read == 4


# --- filter by level, find ----------------------------------------------------------------------

@pytest.fixture
def mixed_run(ctx, client, login_as):
    """3,000 lines cycling through the four levels; every 7th says "needle 100%_done"."""
    login_as(make_user())
    return finished_run(lines=3000, level_of=lambda seq: LEVELS[seq % 4],
                        message_of=lambda seq: f"line {seq}" + (" needle 100%_done" if seq % 7 == 0 else ""))


@pytest.mark.parametrize("endpoint", ["popup", "page"])
def test_the_level_filter_shows_only_those_levels_over_the_whole_log(mixed_run, client, endpoint):
    url = f"/runs/{mixed_run.id}" + ("/popup" if endpoint == "popup" else "")
    target = "popup-log-view" if endpoint == "popup" else "log-view"
    body = client.get(url, query_string={"level": ["error", "warning"]},
                      headers={**HTMX, "HX-Target": target}).get_data(as_text=True)
    assert body.lstrip().startswith(f'<div class="log-view" id="{target}">')
    levels = re.findall(r'<li class="log-line level-(\w+)">', body)
    assert levels and set(levels) == {"error", "warning"}
    assert "(1500 of 3000 lines match" in body
    assert 'value="error" checked' in body and 'value="debug" checked' not in body
    # Earlier lines keep the filter.
    assert re.search(r'hx-get="[^"]*before=\d+&amp;level=warning&amp;level=error"', body)


def test_find_is_literal_and_case_blind_over_the_whole_log(mixed_run, client):
    body = popup(client, mixed_run.id, q="NEEDLE 100%_").get_data(as_text=True)
    lines = shown_lines(body)
    assert lines[-1] == "line 2996 needle 100%_done" and len(lines) == 3000 // 7
    assert all("needle 100%_done" in line for line in lines)
    assert "(428 of 3000 lines match)" in body
    # "%" and "_" match only themselves.
    assert "(0 of 3000 lines match)" in popup(client, mixed_run.id, q="needle 1_0").get_data(as_text=True)
    assert "No line matches." in popup(client, mixed_run.id, q="%%").get_data(as_text=True)


def test_level_and_find_together(mixed_run, client):
    lines = shown_lines(popup(client, mixed_run.id, level="debug", q="needle").get_data(as_text=True))
    assert lines and all(int(line.split()[1]) % 28 == 0 for line in lines)


@pytest.mark.parametrize("value, expected", [
    ("a\x00b", 400), ("x" * 10_000, 400),  # control characters, overlong values: refused app-wide
    ("x" * 2000, "(0 of 3000 lines match)"), ("' OR 1=1 --", "(0 of 3000 lines match)"),
    ("\\", "(0 of 3000 lines match)"), ("e_1", "(0 of 3000 lines match)"),
    ("\u202e", "(750 of 3000 lines match"),  # not printable: dropped, the level filter alone applies
])
def test_hostile_find_text_is_answered_plainly(mixed_run, client, value, expected):
    """webapp/guards.py refuses control characters and overlong values for the whole app; anything
    else is a text to find, never a 500."""
    response = popup(client, mixed_run.id, q=value, level=["nope", "error"])
    if expected == 400:
        assert response.status_code == 400
    else:
        assert response.status_code == 200 and expected in response.get_data(as_text=True)


# --- download ------------------------------------------------------------------------------------

def test_the_download_streams_every_line_as_text_named_after_the_run(ctx, client, login_as):
    login_as(make_user())
    run = finished_run(lines=12_345, level_of=lambda seq: "warning" if seq == 5 else "info")
    response = client.get(f"/runs/{run.id}/log.txt")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"] == f'attachment; filename="run-{run.id}.log"'
    text = response.get_data(as_text=True).splitlines()
    assert len(text) == 12_345
    assert text[0].endswith("  INFO     line 1") and text[4].endswith("  WARNING  line 5")
    assert text[-1].endswith("line 12345")


def test_the_download_of_a_live_run_has_its_lines_so_far(ctx, client, login_as):
    login_as(make_user())
    run = Run(job_id=make_job().id, trigger=Trigger.HAND, status=RunStatus.IN_PROGRESS, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    for seq in range(1, 4):
        livelog.add_line(redis_client.conn, run.id, seq, utcnow(), "info", f"live {seq}")
    text = client.get(f"/runs/{run.id}/log.txt").get_data(as_text=True)
    assert [line.split("INFO     ")[1] for line in text.splitlines()[:3]] == ["live 1", "live 2", "live 3"]
    assert "in progress: these are its lines so far" in text


# --- who may see it ------------------------------------------------------------------------------

ROLES = {
    "superadmin": (dict(role=Role.SUPERADMIN), 200),
    "sysadmin": (dict(role=Role.SYSADMIN, supervised="mine"), 200),
    "domain admin of the run's domain": (dict(role=Role.DOMAIN_ADMIN, domain="mine"), 200),
    "domain admin of another domain": (dict(role=Role.DOMAIN_ADMIN, domain="other"), 404),
}


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("path", ["/popup", "/log.txt", "", "/status"])
def test_popup_download_and_page_answer_404_to_those_who_may_not_see_the_run(ctx, client, login_as, who, path):
    domains = {"mine": make_domain(), "other": make_domain()}
    spec, expected = ROLES[who]
    spec = dict(spec)
    if "domain" in spec:
        spec["domain"] = domains[spec["domain"]]
    if "supervised" in spec:
        spec["supervised"] = [domains[spec["supervised"]]]
    run = finished_run(job=make_job(domain=domains["mine"]), lines=2, message_of=lambda seq: f"secret {seq}")
    login_as(make_user(**spec))
    response = client.get(f"/runs/{run.id}{path}", headers=HTMX)
    assert response.status_code == expected
    assert ("secret 2" in response.get_data(as_text=True)) == (expected == 200 and path != "/status")
    if expected == 404:
        assert db.session.scalar(select(LogRead)) is None  # nothing marked read either


@pytest.mark.parametrize("path", ["/popup", "/log.txt"])
def test_anonymous_readers_are_sent_to_sign_in(ctx, client, path):
    run = finished_run(lines=1)
    response = client.get(f"/runs/{run.id}{path}", headers=HTMX)
    assert response.status_code == 302 and "/login" in response.location
