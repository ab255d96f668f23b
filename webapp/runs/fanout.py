"""One Redis reader per live run and web process, shared by everyone watching that run.

With a blocking XREAD per viewer, 200 open live logs meant 200 reads answered and 200 renderings
of every line, and pages waited behind them. Here a Feed per run reads the run's stream with one
blocking XREAD at a time and keeps what it read in a bounded buffer; viewers only wait for the
feed's news and take the entries after the last one they got, each once and in stream order.
What an entry becomes on the wire is encoded once (`Entry.event`) and shared.

The buffer starts with the stream's last BUFFER_ENTRIES entries, so that viewers who open a
run's log at the same time share the lines written before they came as well. A viewer behind
the buffer (its Last-Event-ID names an older entry, the stream is longer, or it fell so far
behind that the buffer let go of its place) reads that backlog from Redis itself, without
blocking, then joins the buffer where its reads end: no gap, no entry twice (both sides go by
stream entry id).

The reader is a thread: a greenlet under gunicorn's gevent workers (which monkey-patch
threading), a real thread under the development server and the test client. It stops when its
last viewer has left (within READ_BLOCK_MS), when it read the run's end entry, or when the stream
has said nothing for IDLE_CHECK_SECONDS and the database says the run is over (the stream expired
or Redis was emptied). While Redis fails it retries with backoff; viewers keep their connections
and get keep-alives meanwhile.
"""
import bisect
import logging
import threading
import time
from dataclasses import dataclass, field

from flask import current_app
from redis.exceptions import RedisError

from webapp.execution import livelog

log = logging.getLogger(__name__)

READ_BLOCK_MS = 2000  # a reader sees that its last viewer left within this
BATCH = 500  # entries a read and a viewer's turn at most
BUFFER_ENTRIES = 1000  # entries a feed keeps; a viewer behind them reads Redis itself
IDLE_CHECK_SECONDS = 15  # a stream silent this long: ask the database whether the run is over
SENTRY_SECONDS = 2.0  # a quiet feed wakes its viewers this often, so they can send keep-alives
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0  # seconds between a failing reader's tries
EXTENSION = "livelog_fanout"
BEHIND = object()  # what Feed.take says to a viewer behind its buffer

_hub_lock = threading.Lock()


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a pair that sorts as Redis does."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


@dataclass(eq=False)
class Entry:
    """One entry of a run's stream, with the events made of it so far."""

    id: str
    key: tuple[int, int]
    fields: dict
    _events: dict = field(default_factory=dict)

    @classmethod
    def read(cls, pairs) -> list["Entry"]:
        return [cls(entry_id, parse_id(entry_id), fields) for entry_id, fields in pairs]

    def event(self, variant, make) -> bytes:
        """The bytes `make()` gives for this entry and `variant` (what else the event depends
        on), made once for all the viewers that get the same."""
        made = self._events.get(variant)
        if made is None:
            made = self._events.setdefault(variant, make())
        return made


class Feed:
    """The shared read of one run's stream in this process.

    Viewers wait on `news`, an Event the reader sets, and replaces with a fresh one, whenever the
    buffer grows or the reader starts or stops. Waking a hundred viewers is then one pass over
    them (gevent's Event switches to each in turn), not a lock made, taken and released for each
    as a Condition does: a line costs a fifth less web CPU on its way to them, and reaches the
    last of them sooner (bench/viewers.py)."""

    def __init__(self, hub: "Hub", run_id: int):
        self.hub, self.run_id = hub, run_id
        self.lock = threading.Lock()  # the buffer changes under it (real threads outside gevent)
        self.news = threading.Event()
        self.entries: list[Entry] = []
        self.keys: list[tuple[int, int]] = []
        # The buffer holds every entry after `floor` that the reader got (None until it started).
        self.floor: Entry | None = None
        self.last_id: str | None = None  # where the reader reads from
        self.over = False  # the run ended: its end entry is in the buffer, or the database says so
        self.stopped = False  # the reader stopped; nothing more comes into the buffer
        self.viewers = 0  # changed under the hub's lock
        self.sentried = False  # a waiting viewer keeps the time for all the others (take)
        self.reads = 0  # blocking reads made
        self.thread = threading.Thread(target=self._run, name=f"livelog-{run_id}", daemon=True)

    # -- the viewers' side --------------------------------------------------------------------

    def take(self, key, wait: float):
        """The entries after `key` (at most BATCH), waiting about `wait` seconds for some (or for
        the reader to start; up to SENTRY_SECONDS more): [] if none came, BEHIND if the buffer
        does not reach back to `key`, None if the reader stopped and the viewer has had everything.

        Only one waiting viewer of the feed, its sentry, waits with a timer: starting and
        cancelling one for every viewer and entry was a tenth of the cost of a line's way to a
        hundred viewers. When the feed has been quiet for SENTRY_SECONDS, the sentry wakes them
        all to look at their time (a keep-alive may be due), whatever the reader is doing."""
        deadline = None
        while True:
            with self.lock:
                news = self.news  # set by the reader's next change, even one made right after this
                if self.floor is not None:
                    if key < self.floor.key:
                        return BEHIND
                    start = bisect.bisect_right(self.keys, key)
                    if start < len(self.entries):
                        return self.entries[start:start + BATCH]
                if self.stopped:
                    return None
                now = time.monotonic()
                deadline = now + wait if deadline is None else deadline
                if now >= deadline:
                    return []
                sentry, self.sentried = not self.sentried, True
            if sentry:
                self._keep_watch(news, min(deadline - now, SENTRY_SECONDS))
            else:
                news.wait()

    def _keep_watch(self, news, seconds):
        """Wait for `news` as the feed's sentry; if none came, wake the other viewers."""
        heard = False
        try:
            heard = news.wait(seconds)
        finally:
            with self.lock:
                self.sentried = False
                if not heard and self.news is news:
                    self._announce()

    def wait_for_news(self, seconds: float):
        """Wait until the reader adds or starts or stops, at most `seconds`."""
        with self.lock:
            news, stopped = self.news, self.stopped
        if not stopped and seconds > 0:
            news.wait(seconds)

    def _announce(self):
        """Wake every waiting viewer; called under the lock, after a change."""
        news, self.news = self.news, threading.Event()
        news.set()

    # -- the reader ----------------------------------------------------------------------------

    def _run(self):
        failures, quiet_since = 0, time.monotonic()
        try:
            while self.hub.wanted(self):
                try:
                    if self.last_id is None:
                        self._start(Entry.read(livelog.newest(self.hub.conn, self.run_id, BUFFER_ENTRIES + 1)))
                        continue
                    self.reads += 1
                    batch = livelog.read(self.hub.conn, self.run_id, self.last_id, block_ms=READ_BLOCK_MS,
                                         count=BATCH)
                except RedisError as exc:
                    failures += 1
                    if failures == 1:
                        log.warning("live log reader waits for Redis run=%s (%s: %s)", self.run_id,
                                    type(exc).__name__, exc)
                    if self.hub.run_over(self.run_id):
                        return self._mark_over()
                    time.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)))
                    continue
                if failures:
                    log.info("live log reader reaches Redis again run=%s", self.run_id)
                    failures = 0
                if batch:
                    quiet_since = time.monotonic()
                    if self._add(Entry.read(batch)):
                        return
                    # The viewers first: under gevent this greenlet goes behind them, and sending
                    # the next XREAD (half a millisecond of redis-py) no longer delays every line.
                    time.sleep(0)
                elif time.monotonic() - quiet_since >= IDLE_CHECK_SECONDS:
                    if self.hub.run_over(self.run_id):
                        return self._mark_over()
                    quiet_since = time.monotonic()
        except Exception:  # viewers must not wait on a dead reader: they start another
            log.exception("live log reader failed run=%s", self.run_id)
        finally:
            self.hub.forget(self)
            with self.lock:
                self.stopped = True
                self._announce()

    def _start(self, newest: list[Entry]):
        """The buffer starts with the stream's newest entries (what viewers who come now have
        not seen, most often), the reader after them. Older ones are each viewer's own backlog."""
        if len(newest) > BUFFER_ENTRIES:
            floor, newest = newest[0], newest[1:]
        else:  # the whole stream
            floor = Entry("0-0", (0, 0), {})
        with self.lock:
            self.floor, self.entries, self.keys = floor, newest, [entry.key for entry in newest]
            self.last_id = newest[-1].id if newest else floor.id
            self._announce()

    def _add(self, entries: list[Entry]) -> bool:
        """Put read entries in the buffer and wake the viewers; whether the run's end was among them."""
        ended = any(entry.fields.get("t") == "end" for entry in entries)
        if ended:
            self.hub.forget(self)  # a viewer who comes now gets a reader of its own, not this ending one
        with self.lock:
            self.entries += entries
            self.keys += [entry.key for entry in entries]
            excess = len(self.entries) - BUFFER_ENTRIES
            if excess > 0:
                self.floor = self.entries[excess - 1]
                del self.entries[:excess], self.keys[:excess]
            self.last_id = entries[-1].id
            self.over = self.over or ended
            self._announce()
        return ended

    def _mark_over(self):
        self.hub.forget(self)
        with self.lock:
            self.over = True


class Hub:
    """The feeds of one app in one process, by run."""

    def __init__(self, app, conn, is_over):
        self.app, self.conn, self.is_over = app, conn, is_over
        self.lock = threading.Lock()
        self.feeds: dict[int, Feed] = {}

    def join(self, run_id) -> Feed:
        with self.lock:
            feed = self.feeds.get(run_id)
            created = feed is None
            if created:
                feed = self.feeds[run_id] = Feed(self, run_id)
            feed.viewers += 1
        if created:
            feed.thread.start()
        return feed

    def leave(self, feed: Feed):
        with self.lock:
            feed.viewers -= 1

    def wanted(self, feed: Feed) -> bool:
        """Whether the feed still has viewers; once it has none it is forgotten, so that the
        next viewer of the run starts a new one."""
        with self.lock:
            if feed.viewers > 0:
                return True
            self._forget(feed)
            return False

    def forget(self, feed: Feed):
        with self.lock:
            self._forget(feed)

    def _forget(self, feed: Feed):
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

    def run_over(self, run_id) -> bool:
        try:
            with self.app.app_context():
                return self.is_over(run_id)
        except Exception:  # the database away too: keep reading
            log.exception("live log reader could not read the run's status run=%s", run_id)
            return False


def hub(conn, is_over) -> Hub:
    """The current app's hub, made on first use with the app's Redis client and the predicate
    that says from the database whether a run is over."""
    app = current_app._get_current_object()
    found = app.extensions.get(EXTENSION)
    if found is None:
        with _hub_lock:
            found = app.extensions.setdefault(EXTENSION, Hub(app, conn, is_over))
    return found


class Watch:
    """One viewer of a run's stream from the entry `entry_id` on; a context manager that leaves
    the feed at its end."""

    def __init__(self, hub_: Hub, run_id: int, entry_id: str = "0-0"):
        self.hub, self.run_id = hub_, run_id
        self.cursor, self.key = entry_id, parse_id(entry_id)
        self.feed = hub_.join(run_id)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.feed is not None:
            self.hub.leave(self.feed)
            self.feed = None

    def next(self, wait: float) -> list[Entry] | None:
        """The entries after the last ones returned, in stream order, each once; [] after `wait`
        seconds without any (or while Redis is away: time for a keep-alive); None once the run
        is over and Redis has nothing more for this viewer (the database has the rest)."""
        deadline = time.monotonic() + wait
        while True:
            left = max(0.0, deadline - time.monotonic())
            batch = self.feed.take(self.key, left)
            if batch is BEHIND:
                batch = self._backlog(left)
                if batch is BEHIND:
                    continue
            if batch is None:
                if self.feed.over:
                    return None
                self._rejoin(min(1.0, left))  # the reader failed: another one
                return []
            if batch:
                self.cursor, self.key = batch[-1].id, batch[-1].key
            return batch

    def _backlog(self, left: float):
        """Entries after the cursor read from Redis directly, without blocking; BEHIND when the
        viewer moved to the buffer's floor; None when Redis fails and the reader has stopped."""
        try:
            batch = Entry.read(livelog.read(self.hub.conn, self.run_id, self.cursor, count=BATCH))
        except RedisError:
            if self.feed.stopped:
                return None
            self.feed.wait_for_news(min(1.0, left))
            return []
        if batch:
            return batch
        # Redis has nothing after the cursor: what lay between it and the buffer is gone
        # (expired, trimmed or emptied). The database fills that in at the end, by seq.
        self.cursor, self.key = self.feed.floor.id, self.feed.floor.key
        return BEHIND

    def _rejoin(self, pause: float):
        time.sleep(pause)
        self.hub.leave(self.feed)
        self.feed = self.hub.join(self.run_id)
