"""Server-sent events for a run's live log: lines and progress from the run's Redis stream
as they happen, then an `end` event; a finished run replays its log from the database.

Lines read from the database are at most the last `logs.PAGE_LINES` of those the reader has not
got, after an `earlier` event that says how many it did not get and links to them on the run's
page: a run may have 100,000 lines, and a replay never sends them all.

Every event carries an id, which a reconnecting EventSource sends back as Last-Event-ID, so
that it gets each line once:
- a live event: "<stream entry id>/<seq>", the Redis entry and the seq of the last line sent;
- a line or the progress replayed from the database: "db-<seq>"; the `earlier` event has the
  seq of the last line it stands for, so a reconnect after it gets only the lines that followed;
- the end: "end" (a reconnect after it gets the end alone).
The seq in a live id lets a browser that watched a run live and reconnects after it ended
get only the lines it has not seen from the database's copy.
"""
import json
import re
from dataclasses import dataclass

from flask import current_app, render_template
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Run, RunLogLine
from webapp.runs import fanout, logs

KEEPALIVE_MS = 15000
KEEPALIVE = b": keep-alive\n\n"
END_ID = "end"
_UINT64 = 2**64 - 1  # the largest part of a Redis stream id
_MAX_SEQ = 10**9


@dataclass(frozen=True)
class Resume:
    """Where a (re)connecting reader is: the Redis entry and line seq it got last, or the end."""

    entry_id: str = "0-0"
    after_seq: int = 0
    ended: bool = False


def resume_from(last_event_id: str | None) -> Resume:
    """The Resume an event id of ours names; anything else starts over."""
    text = last_event_id or ""
    if text == END_ID:
        return Resume(ended=True)
    replayed = re.fullmatch(r"db-([0-9]{1,10})", text)
    if replayed and int(replayed[1]) <= _MAX_SEQ:
        return Resume(after_seq=int(replayed[1]))
    live = re.fullmatch(r"([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,10})", text)
    if live and int(live[1]) <= _UINT64 and int(live[2]) <= _UINT64 and int(live[3]) <= _MAX_SEQ:
        return Resume(entry_id=f"{int(live[1])}-{int(live[2])}", after_seq=int(live[3]))
    return Resume()


def sse(event: str, data: str, event_id: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {event_id}\nevent: {event}\n{lines}\n"


def render_line(line: dict) -> str:
    return render_template("runs/_line.html", line=line)


def render_progress(percent, message) -> str:
    return render_template("runs/_progress.html", percent=int(percent), message=message)


def _end(status: str) -> str:
    return sse("end", json.dumps({"status": status}), END_ID)


def events(run_id: int, conn, resume: Resume = Resume(), block_ms: int | None = None):
    """Yield SSE text until the run ends, with a keep-alive after `block_ms` (KEEPALIVE_MS)
    without an event. Runs inside the request's app context.

    Live entries come from the run's shared feed (webapp/runs/fanout.py): one Redis reader per
    run and process, whatever the number of viewers, and each event encoded once for them all."""
    block_ms = KEEPALIVE_MS if block_ms is None else block_ms
    run = db.session.get(Run, run_id)
    if resume.ended:
        yield _end(run.status)
        return
    if run.is_final:
        yield from _replay(run, resume.after_seq)
        return
    db.session.remove()  # hold no database connection while waiting on Redis
    seq = resume.after_seq
    with fanout.Watch(fanout.hub(conn, _is_over), run_id, resume.entry_id) as watch:
        while True:
            entries = watch.next(block_ms / 1000)
            if entries is None:  # the stream expired or Redis was emptied after the end
                yield from _replay(db.session.get(Run, run_id), seq)
                return
            if not entries:
                yield KEEPALIVE
                continue
            chunks = []
            for entry in entries:
                kind = entry.fields.get("t")
                if kind == "line":
                    if int(entry.fields["seq"]) <= seq:
                        continue  # sent before the reconnect
                    seq = int(entry.fields["seq"])
                    chunks.append(entry.event(seq, lambda: _live_line(entry, seq)))
                elif kind in ("progress", "status"):
                    chunks.append(entry.event(seq, lambda: _live_state(entry, seq)))
                elif kind == "end":
                    # The database has the whole log by now: lines that never reached Redis follow.
                    stored, _ = _stored_lines(run_id, seq)
                    yield b"".join(chunks) + "".join([*stored, _end(entry.fields["status"])]).encode()
                    return
            if chunks:
                yield b"".join(chunks)


def _live_line(entry, seq) -> bytes:
    fields = entry.fields
    return sse("line", render_line({"seq": fields["seq"], "at": fields["at"], "level": fields["level"],
                                    "message": fields["msg"]}), f"{entry.id}/{seq}").encode()


def _live_state(entry, seq) -> bytes:
    """A progress or status entry; its id carries the seq of the viewer's last line."""
    fields = entry.fields
    if fields["t"] == "progress":
        return sse("progress", render_progress(fields["p"], fields["msg"]), f"{entry.id}/{seq}").encode()
    return sse("status", json.dumps({"status": fields["status"]}), f"{entry.id}/{seq}").encode()


def _is_over(run_id) -> bool:
    """Whether the run has ended (or was purged meanwhile)."""
    status = db.session.scalar(select(Run.status).where(Run.id == run_id))
    db.session.remove()
    return status not in ("queued", "in_progress")


def _stored_lines(run_id, after_seq) -> tuple[list[str], int]:
    """Events for the stored lines after `after_seq` (at most the last PAGE_LINES, after an
    `earlier` event for the rest) and the seq of the last line."""
    lines, earlier = logs.last_lines(run_id, after=after_seq)
    events = [sse("earlier", render_template("runs/_earlier.html", run_id=run_id, count=earlier,
                                             before=lines[0].seq), f"db-{lines[0].seq - 1}")] if earlier else []
    events += [_line_event(line) for line in lines]
    return events, lines[-1].seq if lines else after_seq


def _line_event(line: RunLogLine) -> str:
    return sse("line", render_line({"seq": line.seq, "at": line.at.isoformat(), "level": line.level,
                                   "message": line.message}), f"db-{line.seq}")


def _replay(run, after_seq=0):
    """The log of a finished run from the database, after the line `after_seq`."""
    if run is None:  # purged meanwhile
        yield _end("gone")
        return
    events, last = _stored_lines(run.id, after_seq)
    yield from events
    yield sse("progress", render_progress(run.progress, run.progress_message), f"db-{last}")
    yield _end(run.status)
    current_app.logger.debug("replayed run=%s after=%s", run.id, after_seq)
