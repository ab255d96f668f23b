"""Server-sent events for a run's live log: lines and progress from the run's Redis stream
as they happen, then an `end` event; a finished run replays its log from the database."""
import json
import time

from redis.exceptions import RedisError

from flask import current_app, render_template
from sqlalchemy import select

from webapp.execution import livelog
from webapp.extensions import db
from webapp.models import Run, RunLogLine

KEEPALIVE_MS = 15000


def sse(event: str, data: str, entry_id: str | None = None) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    # The id lets a reconnecting EventSource resume after the last line it got (Last-Event-ID).
    return (f"id: {entry_id}\n" if entry_id else "") + f"event: {event}\n{lines}\n"


def render_line(line: dict) -> str:
    return render_template("runs/_line.html", line=line)


def render_progress(percent, message) -> str:
    return render_template("runs/_progress.html", percent=int(percent), message=message)


def events(run_id: int, conn, last_id: str = "0-0", block_ms: int = KEEPALIVE_MS):
    """Yield SSE text until the run ends. Runs inside the request's app context."""
    run = db.session.get(Run, run_id)
    if run.is_final:
        yield from _replay(run)
        return
    db.session.remove()  # hold no database connection while waiting on Redis
    while True:
        try:
            entries = livelog.read(conn, run_id, last_id, block_ms=block_ms)
        except RedisError:  # Redis restarting: keep the page's connection and try again
            time.sleep(1)
            entries = []
        if not entries:
            status = _final_status(run_id)
            if status:  # the stream expired or Redis was emptied after the end
                yield sse("end", json.dumps({"status": status}))
                return
            yield ": keep-alive\n\n"
            continue
        for entry_id, fields in entries:
            last_id = entry_id
            kind = fields.get("t")
            if kind == "line":
                yield sse("line", render_line({"seq": fields["seq"], "at": fields["at"],
                                               "level": fields["level"], "message": fields["msg"]}), entry_id)
            elif kind == "progress":
                yield sse("progress", render_progress(fields["p"], fields["msg"]), entry_id)
            elif kind == "status":
                yield sse("status", json.dumps({"status": fields["status"]}), entry_id)
            elif kind == "end":
                yield sse("end", json.dumps({"status": fields["status"]}))
                return


def _final_status(run_id) -> str | None:
    """The run's status once it is over ("gone" if it was purged meanwhile), else None."""
    status = db.session.scalar(select(Run.status).where(Run.id == run_id))
    db.session.remove()
    if status is None:
        return "gone"
    return None if status in ("queued", "in_progress") else status


def _replay(run):
    query = select(RunLogLine).where(RunLogLine.run_id == run.id).order_by(RunLogLine.seq)
    for line in db.session.scalars(query):
        yield sse("line", render_line({"seq": line.seq, "at": line.at.isoformat(), "level": line.level,
                                       "message": line.message}))
    yield sse("progress", render_progress(run.progress, run.progress_message))
    yield sse("end", json.dumps({"status": run.status}))
    current_app.logger.debug("replayed run=%s", run.id)
