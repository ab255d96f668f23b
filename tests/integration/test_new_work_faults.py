"""Faults in the middle of this session's new work: a support script running through a Redis outage,
and an envelope whose chain meets an emptied Redis between steps and a killed worker: nothing lost,
nothing stuck, nothing run twice."""
import io
import time

from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from tests.conftest import wait_for
from tests.factories import make_script_job, make_user
from tests.integration.test_engine import final
from tests.integration.test_redis_outage import start_worker
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.linkage import chain, upload
from webapp.models import Domain, Run, RunLogLine, RunStatus
from webapp.models.linkage import Envelope, EnvelopeStatus, LinkageRecord

SCRIPT = """
import time
for n in range(1, 41):
    print(f"line {n}")
    time.sleep(0.1)
log("done")
"""


def test_a_script_runs_through_a_redis_outage_and_keeps_every_line(ctx, redis_server, start_process):
    worker = start_worker(start_process, FIRETIME_RUN_DEAD_AFTER="10")
    job = make_script_job(SCRIPT)
    run_id = dispatch.request_run(job).id
    wait_for(lambda: db.session.scalar(select(Run.status).where(Run.id == run_id)
                                       .execution_options(populate_existing=True)) == RunStatus.IN_PROGRESS,
             30, message="the script to start")
    redis_server.stop()
    try:
        time.sleep(2)
    finally:
        redis_server.start()  # empty, as after a restart without persistence
    run = final(run_id, timeout=60)
    assert run.status == RunStatus.SUCCEEDED, run.message
    printed = [m for m in db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run_id)
                                             .order_by(RunLogLine.seq)) if m.startswith("line ")]
    assert printed == [f"line {n}" for n in range(1, 41)]  # every line, once, in order
    assert worker.proc.poll() is None


def test_an_envelope_goes_through_an_emptied_redis_and_a_killed_worker(ctx, redis_server, start_process):
    project = Domain(name="Registry F", kind="linkage")
    db.session.add(project)
    db.session.commit()
    admin = make_user(username="registrar")
    rows = "\n".join(["id,first_name,surname,dob,sex,postcode", "A1,Anna,Smith,1980-04-02,F,SW1A 1AA",
                      "A2,Ana,Smith,02/04/1980,F,SW1A1AA", "A3,Bert,Jones,1975-11-30,M,LS1 4AP"]) + "\n"
    # No worker yet: the validate step is handed to RQ, then Redis restarts empty and loses it.
    sent = upload.receive(admin, project, FileStorage(io.BytesIO(rows.encode()), filename="people.csv"))
    assert _runs(sent.id)[0].enqueued_at is not None
    redis_server.stop()
    redis_server.start()
    start_process("scheduler")  # its housekeeping hands over again what the emptied Redis lost
    worker = start_worker(start_process)

    # The worker is killed in the middle of the match step (Splink's import alone takes a while).
    match = wait_for(lambda: next((r for r in _runs(sent.id) if chain.step_of(r) == "match"
                                   and r.status == RunStatus.IN_PROGRESS), None), 60, interval=0.02,
                     message="the match step to start")
    worker.kill()
    failed = final(match.id, timeout=60)
    assert failed.status == RunStatus.FAILED  # found lost by housekeeping, with the reason
    assert wait_for(lambda: _ended(sent.id), 20, message="the envelope to end") == EnvelopeStatus.ERRORS
    assert [chain.step_of(r) for r in _runs(sent.id) if r.status in chain.SUCCEEDED] == ["validate", "load"]

    start_worker(start_process)
    assert chain.retry_refusal(failed) is None
    chain.retry(failed, admin)
    assert wait_for(lambda: _ended(sent.id), 120, message="the retried chain") == EnvelopeStatus.SUCCESS
    done = [chain.step_of(r) for r in _runs(sent.id) if r.status in chain.SUCCEEDED]
    assert done == list(chain.STEPS)  # each step once
    groups = dict(db.session.execute(select(LinkageRecord.record_key, LinkageRecord.group_id)
                                     .where(LinkageRecord.project_id == project.id)).all())
    assert groups["A1"] == groups["A2"] != groups["A3"]  # loaded once, matched, grouped


def _ended(envelope_id):
    db.session.expire_all()
    status = db.session.get(Envelope, envelope_id).status
    return status if status not in (EnvelopeStatus.SUCCESS_ACTIVE, EnvelopeStatus.ERRORS_ACTIVE) else None


def _runs(envelope_id):
    db.session.expire_all()
    return chain.runs_of(envelope_id)
