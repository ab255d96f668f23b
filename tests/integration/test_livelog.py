"""The live log: lines reach a reader over server-sent events while the run is in progress."""
import time

from tests.factories import make_job, make_user
from tests.integration.test_engine import final
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import Run, RunStatus


def read_events(response):
    """Parse an SSE body as it arrives: yields (event, data, seconds since start)."""
    started = time.monotonic()
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            event = next((l[7:] for l in block.splitlines() if l.startswith("event: ")), None)
            data = "\n".join(l[6:] for l in block.splitlines() if l.startswith("data: "))
            if event:
                yield event, data, time.monotonic() - started


def test_stream_delivers_lines_while_the_run_is_in_progress(ctx, client, login_as, worker):
    admin = make_user()
    login_as(admin)
    job = make_job(params={"duration": 3, "lines_per_second": 5})
    run = dispatch.request_run(job, user=admin)
    response = client.get(f"/runs/{run.id}/stream", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    lines, statuses_at_lines, ended = [], [], None
    for event, data, _ in read_events(response):
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
    lines = [data for event, data, _ in events if event == "line"]
    assert len(lines) == run.line_count and "Self-test finished." in lines[-1]
    assert events[-1][0] == "end"


def test_log_lines_are_escaped(ctx, client, login_as):
    from webapp.runs.stream import render_line

    with ctx.test_request_context():
        html = render_line({"seq": 1, "at": "2026-01-01T00:00:00+00:00", "level": "info",
                            "message": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html
