"""The live log: lines reach a reader over server-sent events while the run is in progress,
and a browser that reconnects (sending the last event id it got) gets each line once."""
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import insert

from tests.factories import make_job, make_user
from tests.integration.test_engine import final
from webapp.execution import dispatch, livelog
from webapp.extensions import db, redis_client
from webapp.models import Run, RunLogLine, RunStatus, Trigger
from webapp.models.types import utcnow


def read_events(response):
    """Parse an SSE body as it arrives: yields (event, data, seconds since start, event id).
    The id is the last one the stream set, as an EventSource keeps it for Last-Event-ID."""
    started = time.monotonic()
    buffer, last_id = "", ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            event = next((l[7:] for l in block.splitlines() if l.startswith("event: ")), None)
            data = "\n".join(l[6:] for l in block.splitlines() if l.startswith("data: "))
            last_id = next((l[4:] for l in block.splitlines() if l.startswith("id: ")), last_id)
            if event:
                yield event, data, time.monotonic() - started, last_id


def test_stream_delivers_lines_while_the_run_is_in_progress(ctx, client, login_as, worker):
    admin = make_user()
    login_as(admin)
    job = make_job(params={"duration": 3, "lines_per_second": 5})
    run = dispatch.request_run(job, user=admin)
    response = client.get(f"/runs/{run.id}/stream", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    lines, statuses_at_lines, ended = [], [], None
    for event, data, _, _ in read_events(response):
        if event == "line":
            lines.append(data)
            db.session.expire_all()
            statuses_at_lines.append(db.session.get(Run, run.id).status)
        elif event == "end":
            ended = data
            break
    assert "Self-test started" in lines[0] and "Self-test finished." in lines[-1]
    assert len(lines) >= 15
    # Most lines arrived while the run was still in progress: this is live, not a replay.
    assert statuses_at_lines.count(RunStatus.IN_PROGRESS) >= len(lines) - 3
    assert '"succeeded"' in ended
    assert final(run.id).status == RunStatus.SUCCEEDED


def test_stream_of_a_finished_run_replays_its_log_from_the_database(ctx, client, login_as, worker):
    from webapp.extensions import redis_client

    admin = make_user()
    login_as(admin)
    job = make_job(params={"duration": 0.2, "lines_per_second": 10})
    run = final(dispatch.request_run(job).id)
    redis_client.conn.flushall()  # Redis restarted after the run: nothing is lost
    events = list(read_events(client.get(f"/runs/{run.id}/stream", buffered=False)))
    lines = [data for event, data, _, _ in events if event == "line"]
    assert len(lines) == run.line_count and "Self-test finished." in lines[-1]
    assert events[-1][0] == "end"


def test_log_lines_are_escaped(ctx, client, login_as):
    from webapp.runs.stream import render_line

    with ctx.test_request_context():
        html = render_line({"seq": 1, "at": "2026-01-01T00:00:00+00:00", "level": "info",
                            "message": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html


# --- reconnecting: Last-Event-ID --------------------------------------------------------------

def message(data: str) -> str:
    return re.search(r'<span class="msg">(.*?)</span>', data).group(1)


def shown(events) -> list[str]:
    """The messages of the line events, in the order the page appends them."""
    return [message(data) for event, data, _ in events if event == "line"]


def numbered(*seqs) -> list[str]:
    return [f"line {seq}" for seq in seqs]


def stream(client, run_id, last_event_id=None) -> list[tuple[str, str, str]]:
    """The whole event stream as (event, data, id) until it ends."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    response = client.get(f"/runs/{run_id}/stream", headers=headers, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    return [(event, data, event_id) for event, data, _, event_id in read_events(response)]


@pytest.fixture
def run_with_lines(ctx, client, login_as):
    """A run in progress whose first five lines are in its Redis stream, as the worker writes them."""
    login_as(make_user())
    run = Run(job_id=make_job().id, trigger=Trigger.HAND, status=RunStatus.IN_PROGRESS, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    conn = redis_client.conn
    start = utcnow()
    for seq in range(1, 6):
        livelog.add_line(conn, run.id, seq, start + timedelta(seconds=seq), "info", f"line {seq}")
        if seq == 3:
            livelog.set_progress(conn, run.id, 50, "half way")
    return run


def watch_live(client, run) -> list[tuple[str, str, str]]:
    """What a browser watching live gets: the stream up to its end entry (the end reaches
    Redis here while the database still says in progress, so that the live read ends)."""
    livelog.mark_end(redis_client.conn, run.id, "succeeded", 3600)
    return stream(client, run.id)


def line_ids(events) -> list[str]:
    return [event_id for event, _, event_id in events if event == "line"]


def finish(run, lines=8, status=RunStatus.SUCCEEDED):
    """End the run as the worker records it: every line in the database (some may never have
    reached Redis), the end in the stream."""
    run = db.session.get(Run, run.id)  # a stream request ends the test's session (it shares the app context)
    start = utcnow()
    for seq in range(1, lines + 1):
        db.session.add(RunLogLine(run_id=run.id, seq=seq, at=start, level="info", message=f"line {seq}"))
    run.status, run.finished_at, run.line_count, run.progress = status, utcnow(), lines, 100
    db.session.commit()
    livelog.mark_end(redis_client.conn, run.id, status, 3600)


def test_a_replay_gives_every_event_an_id_and_resumes_after_the_last_one_received(run_with_lines, client):
    run = run_with_lines
    finish(run)
    events = stream(client, run.id)
    assert shown(events) == numbered(*range(1, 9))
    assert line_ids(events) == [f"db-{seq}" for seq in range(1, 9)]
    assert [event for event, _, _ in events][-2:] == ["progress", "end"]
    assert all(event_id for _, _, event_id in events)

    # A reconnect after line 3 gets lines 4 to 8, then the end; after the end, the end alone.
    resumed = stream(client, run.id, "db-3")
    assert shown(resumed) == numbered(*range(4, 9))
    assert resumed[-1][0] == "end"
    ended = events[-1][2]
    assert [event for event, _, _ in stream(client, run.id, ended)] == ["end"]


def test_a_browser_that_got_live_lines_gets_only_the_rest_when_it_reconnects_after_the_end(run_with_lines,
                                                                                               client):
    run = run_with_lines
    live = watch_live(client, run)
    assert shown(live) == numbered(*range(1, 6))
    # The connection dropped after the third line; meanwhile the run finished with eight lines.
    after_third = line_ids(live)[2]
    finish(run)
    resumed = stream(client, run.id, after_third)
    assert shown(resumed) == numbered(*range(4, 9))
    # Also when the progress event after line 3 was the last one received, and when Redis
    # has lost the stream meanwhile.
    progress_id = next(event_id for event, _, event_id in live if event == "progress")
    redis_client.conn.flushall()
    resumed = stream(client, run.id, progress_id)
    assert shown(resumed) == numbered(*range(4, 9))


def test_a_live_reconnect_resumes_after_the_last_entry_received(run_with_lines, client):
    run = run_with_lines
    after_second = line_ids(watch_live(client, run))[1]
    resumed = stream(client, run.id, after_second)  # the run is still in progress in the database
    assert shown(resumed) == numbered(3, 4, 5)
    assert [event for event, _, _ in resumed].count("progress") == 1 and resumed[-1][0] == "end"


@pytest.mark.parametrize("finished", [True, False])
@pytest.mark.parametrize("last_event_id", ["", "garbage", "db-", "db-²", "db-٣", "db-99999999999999999999999",
                                           "99999999999999999999999-0/3", "18446744073709551616-0/1", "٣-٣/1", "٣-٣",
                                           "1-0/x", "end-ish", "\u00e9"])
def test_an_unknown_last_event_id_starts_over(run_with_lines, client, last_event_id, finished):
    run = run_with_lines
    if finished:
        finish(run)
    else:
        livelog.mark_end(redis_client.conn, run.id, "succeeded", 3600)
    events = stream(client, run.id, last_event_id)
    assert shown(events) == numbered(*range(1, 9 if finished else 6))


def test_a_reconnect_after_the_end_of_a_live_stream_gets_only_the_end(run_with_lines, client):
    run = run_with_lines
    live = watch_live(client, run)
    assert live[-1][0] == "end"
    finish(run)
    assert [event for event, _, _ in stream(client, run.id, live[-1][2])] == ["end"]


def test_a_real_run_watched_live_then_reconnected_after_it_ended_shows_each_line_once(ctx, client, login_as,
                                                                                      worker):
    admin = make_user()
    login_as(admin)
    job = make_job(params={"duration": 1.5, "lines_per_second": 10})
    run = dispatch.request_run(job, user=admin)
    response = client.get(f"/runs/{run.id}/stream", buffered=False)
    seen, last_id = [], None
    for event, data, _, event_id in read_events(response):
        if event == "line":
            seen.append(message(data))
            last_id = event_id
            if len(seen) == 4:
                break
    response.close()  # the connection drops
    run = final(run.id)
    seen += shown(stream(client, run.id, last_id))
    stored = db.session.scalars(db.select(RunLogLine.message).where(RunLogLine.run_id == run.id)
                                .order_by(RunLogLine.seq)).all()
    assert len(stored) == run.line_count >= 10
    assert seen == stored


# --- long logs: a page of lines, a bounded replay -------------------------------------------------

LONG = 2500  # lines of the long run; pages and replays hold 1000


def store_lines(run_id, count):
    """Lines 1 to `count` in the database, as the worker stores them (in one statement)."""
    start = utcnow()
    db.session.execute(insert(RunLogLine), [
        {"run_id": run_id, "seq": seq, "at": start, "level": "info", "message": f"line {seq}"}
        for seq in range(1, count + 1)])
    db.session.commit()


@pytest.fixture
def long_run(ctx, client, login_as):
    """A finished run with 2,500 lines in the database, and a signed-in reader."""
    login_as(make_user())
    run = Run(job_id=make_job().id, trigger=Trigger.HAND, status=RunStatus.SUCCEEDED, started_at=utcnow(),
              finished_at=utcnow(), line_count=LONG, progress=100)
    db.session.add(run)
    db.session.commit()
    store_lines(run.id, LONG)
    return run.id


def page_lines(body) -> list[str]:
    return re.findall(r'<li class="log-line[^"]*">.*?<span class="msg">(.*?)</span></li>', body, flags=re.S)


def link(body, element_id) -> str | None:
    """The href of the link in the log's <li id=...>, or None."""
    found = re.search(rf'<li class="log-more" id="{element_id}"><a href="([^"]+)"', body)
    return found.group(1).replace("&amp;", "&") if found else None


def test_the_page_of_a_long_finished_run_shows_its_last_lines_and_pages_back_by_seq(long_run, client):
    body = client.get(f"/runs/{long_run}").get_data(as_text=True)
    assert page_lines(body) == numbered(*range(1501, 2501))
    assert "2500 lines, 1000 shown" in body and "(1500 before these)" in body
    earlier = link(body, "log-earlier")
    assert earlier == f"/runs/{long_run}?before=1501#log" and link(body, "log-later") is None

    # The address says which lines: the page before, with links both ways.
    body = client.get(earlier).get_data(as_text=True)
    assert page_lines(body) == numbered(*range(501, 1501))
    assert link(body, "log-earlier") == f"/runs/{long_run}?before=501#log"
    assert link(body, "log-later") == f"/runs/{long_run}#log" and "(1000 after these)" in body
    body = client.get(f"/runs/{long_run}?before=501").get_data(as_text=True)
    assert page_lines(body) == numbered(*range(1, 501))
    assert link(body, "log-earlier") is None and link(body, "log-later") == f"/runs/{long_run}?before=1501#log"


def test_show_earlier_lines_with_htmx_puts_them_above_the_ones_shown(long_run, client):
    body = client.get(f"/runs/{long_run}").get_data(as_text=True)
    control = re.search(r'<li class="log-more" id="log-earlier">(.*?)</li>', body).group(1)
    assert f'hx-get="/runs/{long_run}?before=1501"' in control and 'hx-target="closest li"' in control
    fragment = client.get(f"/runs/{long_run}?before=1501",
                          headers={"HX-Request": "true", "HX-Target": "log-earlier"}).get_data(as_text=True)
    assert "<html" not in fragment
    assert page_lines(fragment) == numbered(*range(501, 1501))
    assert fragment.lstrip().startswith('<li class="log-more" id="log-earlier">')  # the next link, above them
    assert link(fragment, "log-later") is None  # the later lines are on the page already


@pytest.mark.parametrize("before", ["", "0", "abc", "01", "٣", "99999999999999999999", "-5", "2501", "1"])
def test_any_other_page_address_shows_the_end_of_the_log(long_run, client, before):
    response = client.get(f"/runs/{long_run}?before={before}")
    assert response.status_code == 200
    assert page_lines(response.get_data(as_text=True)) == numbered(*range(1501, 2501))


def test_a_short_log_is_shown_whole_without_paging_links(run_with_lines, client):
    finish(run_with_lines)
    body = client.get(f"/runs/{run_with_lines.id}").get_data(as_text=True)
    assert page_lines(body) == numbered(*range(1, 9)) and "(8 lines)" in body and "log-more" not in body


def test_the_replay_of_a_long_run_sends_its_last_lines_after_saying_how_many_came_before(long_run, client):
    events = stream(client, long_run)
    assert [event for event, _, _ in events[:2]] == ["earlier", "line"]
    note = events[0][1]
    assert "1500 earlier lines" in note and f'href="/runs/{long_run}?before=1501#log"' in note
    assert shown(events) == numbered(*range(1501, 2501))
    assert [event for event, _, _ in events][-2:] == ["progress", "end"]

    # Last-Event-ID: after the note, the lines it did not stand for; after a line, only what followed.
    assert shown(resumed := stream(client, long_run, events[0][2])) == numbered(*range(1501, 2501))
    assert "earlier" not in [event for event, _, _ in resumed]
    assert shown(stream(client, long_run, "db-2000")) == numbered(*range(2001, 2501))
    resumed = stream(client, long_run, "db-100")
    assert "1400 earlier lines" in resumed[0][1] and shown(resumed) == numbered(*range(1501, 2501))


def test_lines_that_never_reached_redis_are_bounded_too(run_with_lines, client):
    store_lines(run_with_lines.id, LONG)  # the database has them all; Redis had the first five
    events = watch_live(client, run_with_lines)
    names = [event for event, _, _ in events]
    assert shown(events) == numbered(*range(1, 6), *range(1501, 2501))
    assert names.count("earlier") == 1 and "1495 earlier lines" in events[names.index("earlier")][1]
    assert names[-1] == "end"
