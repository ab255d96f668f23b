"""Everyone watching a run's live log in one web process shares one Redis reader: each viewer
still gets every line once and in order, whoever else comes or goes, across a Redis restart,
and after a reconnect with Last-Event-ID."""
import threading
import time
from datetime import timedelta

import pytest

from tests.conftest import wait_for
from tests.integration.test_livelog import numbered, read_events, run_with_lines, shown  # noqa: F401
from webapp.execution import livelog
from webapp.extensions import redis_client
from webapp.models.types import utcnow
from webapp.runs import fanout, stream


class Viewer(threading.Thread):
    """A browser's EventSource on a test client of its own, in a thread of its own."""

    def __init__(self, app, cookie, run_id, last_event_id=None):
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.client.set_cookie("session", cookie)
        self.run_id = run_id
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.events = []  # (event, data, id)
        self.leaving = False  # closes the connection after the next event, as a closed tab does
        self.reading = threading.Event()  # cleared: it holds after each event, as a slow browser
        self.reading.set()
        self.error = None

    def run(self):
        try:
            response = self.client.get(f"/runs/{self.run_id}/stream", headers=self.headers, buffered=False)
            try:
                for event, data, _, event_id in read_events(response):
                    self.events.append((event, data, event_id))
                    if event == "end" or self.leaving:
                        return
                    self.reading.wait(30)
            finally:
                response.close()
        except Exception as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc

    def lines(self) -> list[str]:
        return shown(self.events)

    def line_ids(self) -> list[str]:
        return [event_id for event, _, event_id in self.events if event == "line"]


class Writer:
    """Lines of a run into its Redis stream, as the worker's Publisher writes them."""

    def __init__(self, run_id):
        self.conn, self.run_id, self.start = redis_client.conn, run_id, utcnow()

    def line(self, seq):
        livelog.add_line(self.conn, self.run_id, seq, self.start + timedelta(seconds=seq), "info",
                         f"line {seq}")

    def lines(self, seqs, pause=0.0):
        for seq in seqs:
            self.line(seq)
            time.sleep(pause)


@pytest.fixture
def live_run(run_with_lines, client):
    """A run in progress with lines 1 to 5 in its stream, and the session cookie of a reader."""
    return run_with_lines.id, Writer(run_with_lines.id), client.get_cookie("session").value


@pytest.fixture
def watch(ctx, live_run):
    """Open viewers of the live run; at the end the run's end reaches them all."""
    run_id, _, cookie = live_run
    opened = []

    def open_viewer(last_event_id=None):
        viewer = Viewer(ctx, cookie, run_id, last_event_id)
        viewer.start()
        opened.append(viewer)
        return viewer

    yield open_viewer
    try:
        livelog.mark_end(redis_client.conn, run_id, "succeeded", 60)
    finally:
        for viewer in opened:
            viewer.reading.set()
            viewer.join(20)
    assert [viewer.error for viewer in opened if viewer.error] == []


def hub(app) -> fanout.Hub:
    return app.extensions[fanout.EXTENSION]


def blocked_reads() -> int:
    """Connections waiting in a blocking XREAD on our Redis."""
    return sum(1 for client in redis_client.conn.client_list() if client["cmd"] == "xread" and "b" in client["flags"])


def xread_calls() -> int:
    return redis_client.conn.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)


def got(viewers, *seqs, timeout=15):
    wait_for(lambda: all(len(v.lines()) >= len(seqs) or v.error for v in viewers), timeout,
             message=f"{len(viewers)} viewers to get {len(seqs)} lines")
    for viewer in viewers:
        assert viewer.error is None
        assert viewer.lines() == numbered(*seqs)


def test_two_viewers_of_a_run_share_one_redis_reader_and_get_every_line_in_order(ctx, live_run, watch):
    run_id, writer, _ = live_run
    first, second = watch(), watch()
    got([first, second], *range(1, 6))  # the lines written before they came
    feed = hub(ctx).feeds[run_id]
    assert feed.viewers == 2
    wait_for(lambda: blocked_reads() == 1, 5, message="one blocking read for both viewers")

    redis_client.conn.config_resetstat()
    writer.lines(range(6, 26), pause=0.05)  # each line on its own: a read per line and reader
    got([first, second], *range(1, 26))
    # A read of their own for each viewer would be 40 reads at least.
    assert xread_calls() <= 25
    assert first.line_ids() == second.line_ids()
    # Each event was made once for both, the lines written before they came too.
    assert [entry.fields.get("msg") for entry in feed.entries if entry.fields["t"] == "line"] == numbered(*range(1, 26))
    assert all(len(entry._events) == 1 for entry in feed.entries)


def test_a_viewer_leaving_does_not_stop_the_others_and_the_reader_ends_with_the_last(ctx, live_run, watch):
    run_id, writer, _ = live_run
    leaving, staying = watch(), watch()
    got([leaving, staying], *range(1, 6))
    feed = hub(ctx).feeds[run_id]

    leaving.leaving = True
    writer.line(6)  # its connection is found closed when the next event goes out
    leaving.join(10)
    assert not leaving.is_alive() and leaving.lines() == numbered(*range(1, 7))
    wait_for(lambda: feed.viewers == 1, 5, message="the viewer to leave the feed")
    writer.lines(range(7, 11))
    got([staying], *range(1, 11))
    assert hub(ctx).feeds[run_id] is feed and feed.thread.is_alive()

    staying.leaving = True
    writer.line(11)
    staying.join(10)
    wait_for(lambda: not feed.thread.is_alive(), fanout.READ_BLOCK_MS / 1000 + 5, message="the reader to stop")
    assert run_id not in hub(ctx).feeds
    assert blocked_reads() == 0

    # The next viewer starts a reader of its own and gets the whole log.
    again = watch()
    got([again], *range(1, 12))
    assert hub(ctx).feeds[run_id] is not feed


def test_the_reader_stops_at_the_end_of_the_run_and_every_viewer_gets_the_end(ctx, live_run, watch):
    run_id, writer, _ = live_run
    viewers = [watch(), watch(), watch()]
    got(viewers, *range(1, 6))
    feed = hub(ctx).feeds[run_id]
    writer.lines(range(6, 9))
    livelog.mark_end(redis_client.conn, run_id, "succeeded", 60)
    for viewer in viewers:
        viewer.join(10)
        assert viewer.lines() == numbered(*range(1, 9))
        assert [event for event, _, _ in viewer.events][-1] == "end"
    wait_for(lambda: not feed.thread.is_alive(), 5, message="the reader to stop")
    assert run_id not in hub(ctx).feeds


def test_viewers_keep_their_connection_across_a_redis_restart_and_get_each_line_once(ctx, live_run, watch,
                                                                                   redis_server):
    run_id, writer, _ = live_run
    viewers = [watch(), watch()]
    got(viewers, *range(1, 6))
    feed = hub(ctx).feeds[run_id]

    redis_server.stop()
    try:
        time.sleep(1.5)  # the reader fails a few times meanwhile
    finally:
        redis_server.start()  # empty, as after a restart without persistence
    # The worker sends again what it could not (lines 4 and 5 too: their answer was lost), then more.
    wait_for(lambda: _try(writer.lines, range(4, 9)), 10, message="Redis to answer the writer")
    got(viewers, *range(1, 9), timeout=20)
    assert all(viewer.is_alive() for viewer in viewers)  # the same connections
    assert hub(ctx).feeds[run_id] is feed  # and the same reader
    writer.lines(range(9, 12))
    got(viewers, *range(1, 12))


def _try(action, *args) -> bool:
    from redis.exceptions import RedisError

    try:
        action(*args)
        return True
    except RedisError:
        return False


def test_a_reconnect_with_last_event_id_gets_exactly_the_lines_it_missed(ctx, live_run, watch):
    run_id, writer, _ = live_run
    watching = watch()  # the shared reader is running
    got([watching], *range(1, 6))
    writer.lines(range(6, 9))
    got([watching], *range(1, 9))
    after_fourth = watching.line_ids()[3]

    # It comes back while lines keep coming: its backlog from Redis, then the shared feed.
    more = threading.Thread(target=writer.lines, args=(range(9, 41), 0.005))
    more.start()
    back = watch(after_fourth)
    more.join()
    got([back], *range(5, 41))
    got([watching], *range(1, 41))
    assert back.line_ids() == watching.line_ids()[4:]  # the same ids as the live ones


def test_a_viewer_too_slow_for_the_buffer_catches_up_from_redis(ctx, live_run, watch, monkeypatch):
    monkeypatch.setattr(fanout, "BUFFER_ENTRIES", 10)
    run_id, writer, _ = live_run
    quick, slow = watch(), watch()
    got([quick, slow], *range(1, 6))
    slow.reading.clear()  # it takes no more events after the next one, for now
    writer.line(6)
    got([quick, slow], *range(1, 7))
    writer.lines(range(7, 61))
    got([quick], *range(1, 61))
    feed = hub(ctx).feeds[run_id]
    assert len(feed.entries) <= 10 and feed.floor.key > fanout.parse_id(slow.line_ids()[-1].split("/")[0])
    slow.reading.set()
    got([slow], *range(1, 61))
    assert slow.line_ids() == quick.line_ids()


class RawViewer(threading.Thread):
    """A browser's EventSource that notes when each chunk of the answer came, keep-alives too."""

    def __init__(self, app, cookie, run_id):
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.client.set_cookie("session", cookie)
        self.run_id = run_id
        self.chunks = []  # (monotonic time, bytes)
        self.error = None

    def run(self):
        try:
            response = self.client.get(f"/runs/{self.run_id}/stream", buffered=False)
            try:
                for chunk in response.response:
                    self.chunks.append((time.monotonic(), chunk))
                    if b"event: end" in chunk:
                        return
            finally:
                response.close()
        except Exception as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc

    def keep_alives(self) -> list[float]:
        return [at for at, chunk in self.chunks if chunk == stream.KEEPALIVE]


def test_every_viewer_of_a_quiet_run_gets_its_keep_alives_also_while_redis_is_away(ctx, live_run,
                                                                                  redis_server, monkeypatch):
    # Only one waiting viewer keeps a timer for all of them: the others must still hear the time.
    monkeypatch.setattr(stream, "KEEPALIVE_MS", 500)
    monkeypatch.setattr(fanout, "SENTRY_SECONDS", 0.2)
    run_id, writer, cookie = live_run
    viewers = [RawViewer(ctx, cookie, run_id) for _ in range(4)]
    for viewer in viewers:
        viewer.start()
    try:
        wait_for(lambda: all(len(viewer.keep_alives()) >= 3 for viewer in viewers), 10,
                 message="every viewer of a quiet run to get keep-alives")
        redis_server.stop()  # the reader fails and waits for Redis; the viewers keep their time
        try:
            stopped = time.monotonic()
            wait_for(lambda: all(len([at for at in viewer.keep_alives() if at > stopped]) >= 2 for viewer in viewers),
                     10, message="keep-alives while Redis is away")
        finally:
            redis_server.start()
        wait_for(lambda: _try(writer.lines, range(6, 8)), 10, message="Redis to answer the writer")
        got_lines = lambda: all(b"line 7" in b"".join(chunk for _, chunk in viewer.chunks) for viewer in viewers)  # noqa: E731
        wait_for(got_lines, 20, message="the lines written after Redis came back")
    finally:
        _try(livelog.mark_end, redis_client.conn, run_id, "succeeded", 60)
        for viewer in viewers:
            viewer.join(10)
    assert [viewer.error for viewer in viewers if viewer.error] == []
    for viewer in viewers:
        text = b"".join(chunk for _, chunk in viewer.chunks)
        assert text.count(b"event: line") == 7 and text.count(b"event: end") == 1
