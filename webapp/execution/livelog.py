"""The live side of a run in Redis: a stream of log lines and progress, a progress hash,
the worker's heartbeat and the cancel flag. The database keeps the durable copy."""
STREAM = "firetime:run:{}:log"
STATE = "firetime:run:{}:state"
ALIVE = "firetime:run:{}:alive"
CANCEL = "firetime:run:{}:cancel"


def _decode(fields: dict) -> dict:
    return {k.decode(): v.decode() for k, v in fields.items()}


def add_line(conn, run_id, seq, at, level, message):
    conn.xadd(STREAM.format(run_id), {"t": "line", "seq": seq, "at": at.isoformat(),
                                      "level": level, "msg": message})


def set_progress(conn, run_id, percent, message):
    with conn.pipeline(transaction=False) as pipe:
        pipe.hset(STATE.format(run_id), mapping={"progress": percent, "message": message})
        pipe.xadd(STREAM.format(run_id), {"t": "progress", "p": percent, "msg": message})
        pipe.execute()


def mark_started(conn, run_id, worker, alive_ttl):
    """The run left the queue: its first heartbeat, and live readers refresh its status."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(ALIVE.format(run_id), 1, ex=alive_ttl)
        pipe.hset(STATE.format(run_id), mapping={"progress": 0, "message": "started", "status": "in_progress"})
        pipe.xadd(STREAM.format(run_id), {"t": "status", "status": "in_progress", "worker": worker})
        pipe.execute()


def mark_end(conn, run_id, status, ttl):
    """Tell live readers the run is over; the live copy then expires (the database has it)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.xadd(STREAM.format(run_id), {"t": "end", "status": status})
        pipe.hset(STATE.format(run_id), "status", status)
        for key in (STREAM, STATE):
            pipe.expire(key.format(run_id), ttl)
        pipe.delete(ALIVE.format(run_id), CANCEL.format(run_id))
        pipe.execute()


def read(conn, run_id, last_id="0-0", block_ms=None, count=500):
    """Entries after last_id as (id, fields) pairs, waiting up to block_ms for the first."""
    reply = conn.xread({STREAM.format(run_id): last_id}, count=count, block=block_ms)
    if not reply:
        return []
    return [(entry_id.decode(), _decode(fields)) for entry_id, fields in reply[0][1]]


def all_lines(conn, run_id):
    """Every log line still in the stream (used to save the log of a run whose worker died)."""
    entries, last = [], "-"
    while True:
        batch = conn.xrange(STREAM.format(run_id), min=last, count=1000)
        batch = [b for b in batch if b[0].decode() != last]
        if not batch:
            return entries
        for _, fields in batch:
            fields = _decode(fields)
            if fields.get("t") == "line":
                entries.append(fields)
        last = batch[-1][0].decode()


def progress(conn, run_id) -> dict:
    state = conn.hgetall(STATE.format(run_id))
    return _decode(state) if state else {}


def heartbeat(conn, run_id, ttl):
    conn.set(ALIVE.format(run_id), 1, ex=ttl)


def is_alive(conn, run_id) -> bool:
    return bool(conn.exists(ALIVE.format(run_id)))


def request_cancel(conn, run_id):
    conn.set(CANCEL.format(run_id), 1, ex=86400)


def cancel_requested(conn, run_id) -> bool:
    return bool(conn.exists(CANCEL.format(run_id)))
