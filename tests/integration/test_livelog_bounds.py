"""The live log stays bounded whatever job code does: long lines are cut, progress reported per
row is coalesced, the stream is trimmed, and every stream expires."""
from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import make_job
from tests.integration.test_engine import final
from tests.integration.test_recovery import in_progress
from webapp.execution import dispatch, livelog
from webapp.extensions import db, redis_client
from webapp.models import RunLogLine, RunStatus
from webapp.models.types import utcnow


def entries(run_id, kind):
    return [fields for _, fields in livelog.read(redis_client.conn, run_id, count=100_000) if fields["t"] == kind]


def test_a_megabyte_line_is_cut_everywhere_with_a_note(ctx, worker):
    run = final(dispatch.request_run(make_job(job_type="tests.long_line", params={})).id)
    assert run.status == RunStatus.SUCCEEDED
    stored = db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id)
                                .order_by(RunLogLine.seq)).all()
    assert stored[0] == "x" * 10_000 + " … [line cut: 1000000 characters in all]"
    assert stored[1] == "After the long line."
    live = [fields["msg"] for fields in entries(run.id, "line")]
    assert live == stored  # the live copy in Redis too


def test_progress_reported_per_row_sends_few_entries_and_the_last_value(ctx, worker):
    run = final(dispatch.request_run(make_job(job_type="tests.progress_per_row", params={})).id)
    assert run.status == RunStatus.SUCCEEDED
    progress = entries(run.id, "progress")
    seconds = (run.finished_at - run.started_at).total_seconds()
    assert 1 <= len(progress) <= 4 * seconds + 3, (len(progress), seconds)  # not 100,000
    assert progress[-1]["msg"] == "row 100000 of 100000" and progress[-1]["p"] == "100"
    assert run.progress == 100 and run.progress_message == "row 100000 of 100000"


def test_the_stream_expires_while_running_and_after_the_end(ctx, worker):
    run = dispatch.request_run(make_job(params={"duration": 3, "lines_per_second": 5}))
    in_progress(run.id)
    key = livelog.STREAM.format(run.id)
    wait_for(lambda: redis_client.conn.xlen(key) >= 3, message="a few live lines")
    assert 0 < redis_client.conn.ttl(key) <= ctx.config["LIVELOG_TTL"]
    assert 0 < redis_client.conn.ttl(livelog.STATE.format(run.id)) <= ctx.config["LIVELOG_TTL"]
    final(run.id)
    assert 0 < redis_client.conn.ttl(key) <= ctx.config["LIVELOG_TTL"]


def test_a_stream_is_trimmed_near_the_line_limit(ctx):
    conn = redis_client.conn
    lines = [{"seq": n, "at": utcnow(), "level": "info", "message": f"line {n}"} for n in range(1, 5001)]
    publisher = livelog.Publisher(conn, 999, lines, heartbeat_every=1, alive_ttl=4, ttl=60, max_lines=500)
    publisher.start()
    publisher.close(timeout=30)
    length = conn.xlen(livelog.STREAM.format(999))
    # Approximate trimming (whole stream nodes): near the limit, far from the 5,000 written.
    assert 500 <= length < 2500, length
    last = livelog.read(conn, 999, count=100_000)[-1][1]
    assert last["msg"] == "line 5000"  # the newest lines stay
    assert 0 < conn.ttl(livelog.STREAM.format(999)) <= 60
