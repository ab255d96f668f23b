"""The live side of a run in Redis: a stream of log lines and progress, a progress hash,
the work horse's heartbeat, the worker's watch over its horse and the cancel flag. The
database keeps the durable copy: any call here may fail, and callers carry on without it.

Everything here is bounded: the stream is trimmed (XADD MAXLEN ~) to the lines a run may keep
plus some room for progress and status entries, and the stream and progress hash get an expiry
whenever they are written (renewed by the heartbeat while the run lives), so a run whose end
was never marked (its worker died with Redis away) leaves nothing behind for ever."""
import _thread
import logging
import threading
import time

log = logging.getLogger(__name__)
STREAM = "firetime:run:{}:log"
STATE = "firetime:run:{}:state"
ALIVE = "firetime:run:{}:alive"
WATCHED = "firetime:run:{}:watched"  # the worker whose horse runs it, while that worker lives
CANCEL = "firetime:run:{}:cancel"


def _decode(fields: dict) -> dict:
    return {k.decode(): v.decode() for k, v in fields.items()}


# Stream entries beyond a run's line limit: room for its progress, status and end entries.
STATUS_ROOM = 1000


def add_line(conn, run_id, seq, at, level, message, maxlen=None):
    conn.xadd(STREAM.format(run_id), {"t": "line", "seq": seq, "at": at.isoformat(),
                                      "level": level, "msg": message}, maxlen=maxlen, approximate=True)


def set_progress(conn, run_id, percent, message, maxlen=None):
    conn.hset(STATE.format(run_id), mapping={"progress": percent, "message": message})
    conn.xadd(STREAM.format(run_id), {"t": "progress", "p": percent, "msg": message}, maxlen=maxlen,
              approximate=True)


def keep(conn, run_id, ttl):
    """Let the stream and the progress hash live `ttl` seconds from now (renewed while the run
    lives; mark_end sets the last expiry)."""
    for key in (STREAM, STATE):
        conn.expire(key.format(run_id), ttl)


def mark_started(conn, run_id, worker, alive_ttl, ttl=3600):
    """The run left the queue: its first heartbeat, and live readers refresh its status."""
    with conn.pipeline(transaction=False) as pipe:
        stage_started(pipe, run_id, worker, alive_ttl, ttl)
        pipe.execute()


def stage_started(pipe, run_id, worker, alive_ttl, ttl=3600):
    """mark_started's writes, queued on a pipeline the caller sends (the worker sends them with
    RQ's own record of the start: one round trip for both)."""
    pipe.set(ALIVE.format(run_id), 1, ex=alive_ttl)
    pipe.set(WATCHED.format(run_id), worker, ex=alive_ttl)
    pipe.hset(STATE.format(run_id), mapping={"progress": 0, "message": "started", "status": "in_progress"})
    pipe.xadd(STREAM.format(run_id), {"t": "status", "status": "in_progress", "worker": worker})
    keep(pipe, run_id, ttl)


def mark_end(conn, run_id, status, ttl):
    """Tell live readers the run is over; the live copy then expires (the database has it)."""
    with conn.pipeline(transaction=False) as pipe:
        stage_end(pipe, run_id, status, ttl)
        pipe.execute()


def stage_end(pipe, run_id, status, ttl):
    """mark_end's writes, queued on a pipeline the caller sends (the worker sends them with the
    start of its next run)."""
    pipe.xadd(STREAM.format(run_id), {"t": "end", "status": status})
    pipe.hset(STATE.format(run_id), "status", status)
    for key in (STREAM, STATE):
        pipe.expire(key.format(run_id), ttl)
    pipe.delete(ALIVE.format(run_id), WATCHED.format(run_id), CANCEL.format(run_id))


def read(conn, run_id, last_id="0-0", block_ms=None, count=500):
    """Entries after last_id as (id, fields) pairs, waiting up to block_ms for the first."""
    reply = conn.xread({STREAM.format(run_id): last_id}, count=count, block=block_ms)
    if not reply:
        return []
    return [(entry_id.decode(), _decode(fields)) for entry_id, fields in reply[0][1]]


def newest(conn, run_id, count) -> list:
    """The stream's last `count` entries, oldest first, as (id, fields) pairs."""
    return [(entry_id.decode(), _decode(fields)) for entry_id, fields in
            reversed(conn.xrevrange(STREAM.format(run_id), count=count))]


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


def watch(conn, run_id, worker, ttl):
    """Renewed by the worker process while its horse runs the run: a lease. Housekeeping
    never declares the run dead while it holds, and the worker stops its horse before the
    lease can lapse unseen (see FiretimeWorker)."""
    conn.set(WATCHED.format(run_id), worker, ex=ttl)


def watcher(conn, run_id) -> str | None:
    """The name of the worker still watching the run's work horse, if any."""
    name = conn.get(WATCHED.format(run_id))
    return name.decode() if name else None


def request_cancel(conn, run_id):
    conn.set(CANCEL.format(run_id), 1, ex=86400)


class Publisher:
    """The live side of one run, kept by a thread of its work horse: it sends new log lines
    and progress, renews the heartbeat and reads the cancel flag. Job code only touches
    memory, so Redis being slow or away never blocks it nor raises into it. Lines that could
    not be sent go out once Redis answers again (the database gets every line at the end).
    Progress goes out at most every PROGRESS_EVERY seconds, its latest value always: a job
    may report it for every row it reads."""

    RETRY_SECONDS = 1.0
    BATCH = 1000  # lines a pipeline at most (after an outage, many may wait)
    PROGRESS_EVERY = 0.25

    def __init__(self, conn, run_id, lines: list, heartbeat_every: float, alive_ttl: int, ttl: int = 3600,
                 max_lines: int = 100_000):
        self.conn, self.run_id, self.lines = conn, run_id, lines
        self.heartbeat_every, self.alive_ttl, self.ttl = heartbeat_every, alive_ttl, ttl
        self.maxlen = max_lines + STATUS_ROOM
        self.sent = 0  # how many of `lines` are in the stream
        self.progress = None  # (percent, message) not sent yet
        self._progress_sent_at = float("-inf")
        self.cancel_seen = False
        self._check_cancel = False
        self._closing = False
        self._failing = False
        self._refused = False
        self._wake = threading.Event()
        self._done = threading.Event()  # the thread has ended

    def start(self) -> "Publisher":
        # A bare thread (_thread), not threading.Thread: Thread.start() waits until the new thread
        # runs, two hand-overs of the interpreter lock before the job code may start (0.2-0.6 ms
        # a run on a busy host). This one starts while the job code runs, and sends the first line
        # as soon as it does. Like a daemon thread, it never holds up the horse's exit.
        _thread.start_new_thread(self._run, ())
        return self

    def _run(self):
        try:
            self._loop()
        finally:
            self._done.set()

    def line_added(self):
        self._wake.set()

    def set_progress(self, percent, message):
        self.progress = (percent, message)
        if time.monotonic() >= self._progress_sent_at + self.PROGRESS_EVERY:
            self._wake.set()  # otherwise the thread wakes for it when its time comes

    def ask_cancelled(self):
        """Have the thread read the cancel flag; `cancel_seen` shows its answer."""
        self._check_cancel = True
        self._wake.set()

    def close(self, timeout=2.0):
        """Send what is left, waiting briefly: the worker marks the end of the live log next,
        and a reader stops there. If Redis is away the lines are in the database anyway."""
        self._closing = True
        self._wake.set()
        self._done.wait(timeout)

    def _next_wake(self, next_beat) -> float:
        if self.progress is not None:
            return min(next_beat, self._progress_sent_at + self.PROGRESS_EVERY)
        return next_beat

    def _loop(self):
        next_beat = time.monotonic() + self.heartbeat_every  # mark_started gave the first one
        while True:
            self._wake.wait(max(0.0, self._next_wake(next_beat) - time.monotonic()))
            self._wake.clear()
            try:
                if time.monotonic() >= next_beat and not self._closing:
                    next_beat = time.monotonic() + self.heartbeat_every
                    with self.conn.pipeline(transaction=False) as pipe:
                        heartbeat(pipe, self.run_id, self.alive_ttl)
                        keep(pipe, self.run_id, self.ttl)
                        pipe.execute()
                    self._check_cancel = True
                self._send()
            except Exception as exc:  # Redis away, mostly; whatever it is, the heartbeat must go on
                self._note_failure(exc)
                if self._closing:
                    return
                time.sleep(self.RETRY_SECONDS)
                continue
            if self._failing:
                log.info("live log reaches Redis again run=%s", self.run_id)
                self._failing = False
            if self._closing and self.sent >= len(self.lines):
                return

    def _send(self):
        end, check_cancel = min(len(self.lines), self.sent + self.BATCH), self._check_cancel
        now = time.monotonic()
        progress = self.progress if self._closing or now >= self._progress_sent_at + self.PROGRESS_EVERY else None
        with self.conn.pipeline(transaction=False) as pipe:
            for line in self.lines[self.sent:end]:
                add_line(pipe, self.run_id, line["seq"], line["at"], line["level"], line["message"], self.maxlen)
            if progress is not None:
                set_progress(pipe, self.run_id, *progress, maxlen=self.maxlen)
            if len(pipe):
                keep(pipe, self.run_id, self.ttl)
            if check_cancel:
                pipe.exists(CANCEL.format(self.run_id))
            if not len(pipe):
                return
            # A refused command (a key of the wrong type) is reported, not retried for ever.
            results = pipe.execute(raise_on_error=False)
        refused = [r for r in results if isinstance(r, Exception)]
        if refused and not self._refused:
            log.warning("live log write refused run=%s: %s", self.run_id, refused[0])
            self._refused = True
        self.sent = end
        if end < len(self.lines):
            self._wake.set()  # the next batch
        if progress is not None:
            self._progress_sent_at = now
            if self.progress is progress:
                self.progress = None
        if check_cancel:
            self._check_cancel = False
            self.cancel_seen = self.cancel_seen or results[-1] == 1

    def _note_failure(self, exc):
        if not self._failing:
            log.warning("live log of run=%s not sent (%s: %s); lines are kept and sent when Redis answers",
                        self.run_id, type(exc).__name__, exc)
            self._failing = True
