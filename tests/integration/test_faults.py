"""Faults that must not break the invariants: a job type that is gone, a horse declared lost
while it still lives, a run whose start Redis refused, a cancel and its audit record, a skip
after a restore. Real worker and scheduler processes, a real Redis and database."""
import os
import signal
import socket
import threading
from datetime import timedelta

import pytest
from flask import g
from rq.job import Job as RQJob
from sqlalchemy import select, text

from tests.conftest import wait_for
from tests.factories import csrf_from, make_job, make_user
from tests.integration.test_devrun import alive
from tests.integration.test_engine import final
from tests.integration.test_recovery import in_progress
from tests.integration.test_redis_outage import start_worker
from webapp.execution import dispatch, livelog
from webapp.extensions import db, redis_client
from webapp.jobs import editing
from webapp.models import AuditEvent, Run, RunLogLine, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.scheduling import sync

GONE = "tests.renamed_in_an_upgrade"
YEARLY = {"kind": "cron", "expression": "0 0 1 1 *"}


def runs_of(job_id):
    db.session.expire_all()
    return db.session.scalars(select(Run).where(Run.job_id == job_id).order_by(Run.id)).all()


def test_a_job_whose_type_is_gone_fails_its_runs_and_every_other_job_goes_on(ctx, worker, start_process):
    broken = make_job(job_type=GONE, plan=YEARLY)
    # Asked for before the upgrade, and handed to a Redis that was emptied since.
    asked = Run(job_id=broken.id, trigger=Trigger.HAND, enqueued_at=utcnow() - timedelta(minutes=1))
    db.session.add(asked)
    healthy = make_job(plan=YEARLY, next_fire_at=utcnow().replace(microsecond=0))  # due now
    db.session.commit()
    start_process("scheduler")  # its resync places the healthy job's occurrence, and the reaper

    ran = wait_for(lambda: [run for run in runs_of(healthy.id) if run.is_final], 60, message="the healthy job's run")
    assert ran[0].status == RunStatus.SUCCEEDED
    asked = wait_for(lambda: (run := db.session.get(Run, asked.id, populate_existing=True)).is_final and run, 60,
                     message="the broken job's waiting run to end")
    assert asked.status == RunStatus.FAILED and f"job type '{GONE}' is not installed" in asked.message

    broken.next_fire_at = due = utcnow().replace(microsecond=0)
    db.session.commit()
    fired = dispatch.fire_occurrence(broken.id, due.isoformat())  # as the scheduler fires it
    fired = db.session.get(Run, fired.id, populate_existing=True)
    assert fired.status == RunStatus.FAILED and f"job type '{GONE}' is not installed" in fired.message
    assert db.session.get(type(broken), broken.id).next_fire_at > due  # its plan goes on
    with pytest.raises(dispatch.NotRunnable, match=f"'{GONE}' is not installed"):
        dispatch.request_run(broken)


def test_a_job_whose_type_is_gone_shows_as_broken_and_run_now_explains(ctx, client, login_as):
    broken = make_job(name="Old export", job_type=GONE)
    make_job(name="Fine job")
    login_as(make_user())
    g.pop("csrf_token", None)  # the sign-in ended the session of the token cached in g

    page = client.get(f"/jobs/{broken.id}").get_data(as_text=True)
    assert "broken: unknown job type" in page
    listing = client.get("/jobs/").get_data(as_text=True)
    assert listing.count("broken: unknown job type") == 1
    response = client.post(f"/jobs/{broken.id}/run", data={"csrf_token": csrf_from(client.get("/jobs/")),
                                                           "args": ""}, follow_redirects=True)
    assert response.status_code == 200
    assert f"job type &#39;{GONE}&#39; is not installed" in response.get_data(as_text=True)
    assert runs_of(broken.id) == []


@pytest.mark.parametrize("redis_emptied", [False, True], ids=["redis-kept", "redis-emptied"])
def test_a_silent_horse_is_stopped_before_the_next_run_of_its_job_starts(ctx, worker, start_process,
                                                                           redis_emptied):
    job = make_job(params={"duration": 120, "lines_per_second": 5})
    first = in_progress(dispatch.request_run(job).id)
    second = dispatch.request_run(job, args="duration=1")  # waits behind the first
    start_worker(start_process)  # a free worker, ready to take the second at once
    start_process("scheduler")
    horse = worker.children()[0]
    os.kill(horse, signal.SIGSTOP)  # the horse hangs: no heartbeat, but it lives
    try:
        if redis_emptied:
            redis_client.conn.flushall()  # the RQ job hash, the heartbeat and the lease are gone
        second = in_progress(second.id, timeout=90)
        horse_alive = alive(horse)
    finally:
        _continue(horse)
    first = db.session.get(Run, first.id)
    assert not horse_alive, "the second run started beside the first one's horse"
    assert first.status == RunStatus.FAILED and "stopped answering" in first.message
    assert first.finished_at <= second.started_at
    assert final(second.id).status == RunStatus.SUCCEEDED


def test_a_frozen_host_does_not_resume_its_old_run_beside_the_next_one(ctx, worker, start_process):
    """Worker and horse stopped together (a paused VM, Ctrl-Z): the run is declared lost and the
    next one starts elsewhere; when the host resumes, its worker must stop the old horse instead
    of renewing a lease it lost meanwhile."""
    job = make_job(params={"duration": 120, "lines_per_second": 5})
    first = in_progress(dispatch.request_run(job).id)
    second = dispatch.request_run(job, args="duration=30 lines_per_second=1")
    horse = worker.children()[0]
    frozen = [worker.proc.pid, horse]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        start_worker(start_process)
        start_process("scheduler")
        in_progress(second.id, timeout=90)
    finally:
        for pid in frozen:
            _continue(pid)
    wait_for(lambda: not alive(horse), 20, message="the resumed host to stop its old horse")
    first = db.session.get(Run, first.id, populate_existing=True)
    assert first.status == RunStatus.FAILED
    assert db.session.get(Run, second.id, populate_existing=True).status == RunStatus.IN_PROGRESS


class Link:
    """A TCP relay between one worker and Redis that the test can cut, as a network fault cuts
    one host off: once cut, bytes are dropped both ways and nothing answers, but connections
    stay open (a command waits for its socket timeout, as with lost packets)."""

    def __init__(self, redis_port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.redis_port = redis_port
        self.cut = threading.Event()
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.redis_port))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source, sink):
        try:
            while data := source.recv(65536):
                if not self.cut.is_set():
                    sink.sendall(data)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_a_worker_cut_off_from_redis_stops_its_horse_before_the_next_run_starts(ctx, redis_server, start_process):
    link = Link(redis_server.port)
    try:
        cut_off = start_worker(start_process, REDIS_URL=link.url)
        job = make_job(params={"duration": 120, "lines_per_second": 5})
        first = in_progress(dispatch.request_run(job).id)
        second = dispatch.request_run(job, args="duration=1")  # waits behind the first
        start_process()  # a worker on the real Redis, for the second
        start_process("scheduler")
        horse = cut_off.children()[0]
        link.cut.set()  # the first worker's host loses Redis, not the database
        second = in_progress(second.id, timeout=90)
        horse_alive = alive(horse)
    finally:
        link.close()
    first = db.session.get(Run, first.id)
    assert not horse_alive, "the second run started beside the first one's horse"
    assert first.status == RunStatus.FAILED and first.finished_at <= second.started_at
    assert final(second.id).status == RunStatus.SUCCEEDED


def _continue(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def test_a_run_whose_start_redis_refused_runs_all_the_same(ctx, start_process):
    job = make_job(params={"duration": 0.5, "lines_per_second": 10})
    run = dispatch.request_run(job)
    # A key of the wrong type: Redis refuses the run's start mark (WRONGTYPE), after the claim.
    redis_client.conn.set(livelog.STATE.format(run.id), "not a hash")
    start_worker(start_process)
    run = final(run.id, timeout=60)
    assert run.status == RunStatus.SUCCEEDED and run.started_at is not None
    messages = db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id)).all()
    assert len(messages) == run.line_count >= 5 and messages[-1] == "Self-test finished."


@pytest.fixture
def audit_refused(ctx):
    """The database refuses audit records (a trigger), as a full disk or a broken replica would."""
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        statements = ["CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                      "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"]
        undo = ["DROP TRIGGER refuse_audit"]
    else:
        statements = ["CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
                      "RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql",
                      "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                      "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"]
        undo = ["DROP TRIGGER refuse_audit ON audit_events", "DROP FUNCTION refuse_audit()"]
    for statement in statements:
        db.session.execute(text(statement))
    db.session.commit()
    yield
    db.session.rollback()
    for statement in undo:
        db.session.execute(text(statement))
    db.session.commit()


def test_a_cancel_and_its_audit_record_commit_together(ctx, audit_refused):
    job = make_job()
    waiting = Run(job_id=job.id, trigger=Trigger.HAND)
    db.session.add(waiting)
    db.session.commit()
    with pytest.raises(Exception, match="audit refused"):
        dispatch.cancel_run(waiting, make_user())
    db.session.rollback()
    assert db.session.get(Run, waiting.id, populate_existing=True).status == RunStatus.QUEUED
    assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "cancel")) is None


def test_cancelling_a_run_whose_rq_job_is_cancelled_already_is_not_an_error(ctx):
    run = dispatch.request_run(make_job())
    RQJob.fetch(run.rq_job_id, connection=redis_client.conn).cancel()  # by an operator, in RQ
    assert dispatch.cancel_run(run, make_user()) == "cancelled"
    assert db.session.get(Run, run.id, populate_existing=True).status == RunStatus.CANCELLED


def test_skip_next_after_a_remove_and_restore_skips_the_following_occurrence(ctx):
    user = make_user()
    job = make_job(plan={"kind": "cron", "expression": "0 0 1 1 *"})
    sync.reschedule(job)
    first = dispatch.skip_next_occurrence(job, user)
    editing.remove_job(user, job)
    editing.restore_job(user, job)  # the plan points at the skipped new year again
    second = dispatch.skip_next_occurrence(job, user)
    assert second.occurrence_at.year == first.occurrence_at.year + 1
    assert db.session.get(type(job), job.id, populate_existing=True).next_fire_at.year == first.occurrence_at.year + 2
