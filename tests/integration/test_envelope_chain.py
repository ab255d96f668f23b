"""An envelope's chain through real workers (issue 11): the steps one at a time across two workers,
whole envelopes in upload order; the retry guard both ways and a retry that carries the chain on;
cancel; pause on failure; the active statuses while steps wait."""
import io
import pytest
from rq import Worker
from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from tests.conftest import wait_for
from tests.factories import make_user
from webapp.execution import queues
from webapp.extensions import db
from webapp.linkage import chain, upload
from webapp.models import Domain, Run, RunStatus
from webapp.models.linkage import Envelope, EnvelopeStatus, LinkageRecord
from webapp.models.settings import set_setting

HEADER = "id,first_name,surname,dob,sex,postcode"
ACTIVE = (EnvelopeStatus.SUCCESS_ACTIVE, EnvelopeStatus.ERRORS_ACTIVE)


@pytest.fixture
def admin(ctx):
    return make_user(username="registrar")


@pytest.fixture
def project(ctx):
    domain = Domain(name="Registry C", kind="linkage")
    db.session.add(domain)
    db.session.commit()
    return domain


def csv_of(*rows) -> bytes:
    return ("\n".join((HEADER, *rows)) + "\n").encode()


def send(project, admin, *rows, name="people.csv") -> Envelope:
    """Upload a CSV of the rows, as the envelopes page does: stored, and its chain queued."""
    return upload.receive(admin, project, FileStorage(io.BytesIO(csv_of(*rows)), filename=name))


def envelope(envelope_id) -> Envelope:
    db.session.expire_all()
    return db.session.get(Envelope, envelope_id)


def ended(envelope_id, timeout=120) -> str:
    return wait_for(lambda: (status := envelope(envelope_id).status) not in ACTIVE and status, timeout,
                    message=f"envelope {envelope_id} to end")


def steps(envelope_id) -> list[tuple[str, str]]:
    db.session.expire_all()
    return [(chain.step_of(run), run.status) for run in chain.runs_of(envelope_id)]


def run_of(envelope_id, step) -> Run:
    db.session.expire_all()
    return [run for run in chain.runs_of(envelope_id) if chain.step_of(run) == step][-1]


def test_the_steps_run_one_at_a_time_across_two_workers_whole_envelopes_in_upload_order(
        project, admin, start_process, redis_server):
    import redis as redis_lib

    queues.pause("processing", admin, "uploads first")
    first = send(project, admin, "A1,Anna,Smith,1980-04-02,F,SW1A 1AA", "A2,Bert,Jones,1975-11-30,M,LS1 4AP")
    second = send(project, admin, "B1,Ana,Smith,02/04/1980,F,SW1A1AA", "B2,Cara,Brown,1990-06-15,F,M1 1AE")
    assert envelope(first.id).status == envelope(second.id).status == EnvelopeStatus.SUCCESS_ACTIVE
    conn = redis_lib.Redis.from_url(redis_server.url)
    workers = [start_process("--queues", "processing"), start_process("--queues", "processing")]
    wait_for(lambda: len(Worker.all(connection=conn)) >= 2, 30, message="two workers")
    queues.resume("processing", admin)

    assert ended(first.id) == EnvelopeStatus.SUCCESS
    assert ended(second.id) == EnvelopeStatus.SUCCESS
    db.session.expire_all()
    runs = db.session.scalars(select(Run).where(Run.envelope_id.in_((first.id, second.id)))
                              .order_by(Run.started_at)).all()
    assert [(run.envelope_id, chain.step_of(run)) for run in runs] == \
        [(first.id, step) for step in chain.STEPS] + [(second.id, step) for step in chain.STEPS]
    for earlier, later in zip(runs, runs[1:]):
        assert later.started_at >= earlier.finished_at, (earlier, later)  # never two at a time
    # B1 is A1 with a typo'd name and another date format: one group across the two envelopes.
    groups = dict(db.session.execute(select(LinkageRecord.record_key, LinkageRecord.group_id)
                                     .where(LinkageRecord.project_id == project.id)).all())
    assert groups["A1"] == groups["B1"] and len(set(groups.values())) == 3
    assert all(worker.proc.poll() is None for worker in workers)


def test_a_failed_step_stops_the_chain_and_its_retry_carries_it_on(project, admin, worker):
    set_setting("linkage_backend", "spark")  # no pyspark here: the match step fails, saying why
    db.session.commit()
    first = send(project, admin, "A1,Anna,Smith,1980-04-02,F,SW1A 1AA", "A2,Ana,Smith,1980-04-02,F,SW1A 1AA")
    assert ended(first.id) == EnvelopeStatus.ERRORS
    assert steps(first.id) == [("validate", RunStatus.SUCCEEDED), ("load", RunStatus.SUCCEEDED),
                               ("match", RunStatus.FAILED), ("group", RunStatus.CANCELLED),
                               ("report", RunStatus.CANCELLED)]
    failed = run_of(first.id, "match")
    assert "pyspark" in failed.message
    assert run_of(first.id, "group").message == "Not run: the match step did not succeed."
    assert chain.retry_refusal(run_of(first.id, "group")) == "The match step before it did not succeed: retry that one."

    set_setting("linkage_backend", "duckdb")
    db.session.commit()
    assert chain.retry_refusal(failed) is None
    again = chain.retry(failed, admin)
    assert again.retry_of_id == failed.id and again.args == failed.args
    assert ended(first.id) == EnvelopeStatus.SUCCESS  # the retry's success queued group, then report
    assert [status for step, status in steps(first.id) if step == "report"][-1] == RunStatus.SUCCEEDED
    assert chain.retry_refusal(failed) == f"It was retried already, as job #{again.id}."


def test_the_retry_guard_refuses_once_another_job_ran_against_the_project(project, admin, worker):
    set_setting("linkage_backend", "spark")
    db.session.commit()
    first = send(project, admin, "A1,Anna,Smith,1980-04-02,F,SW1A 1AA")
    assert ended(first.id) == EnvelopeStatus.ERRORS
    failed = run_of(first.id, "match")
    set_setting("linkage_backend", "duckdb")
    db.session.commit()
    second = send(project, admin, "B1,Bert,Jones,1975-11-30,M,LS1 4AP")
    assert ended(second.id) == EnvelopeStatus.SUCCESS
    refusal = chain.retry_refusal(failed)
    assert refusal == f"Job #{run_of(second.id, 'validate').id} has run against this project since; " \
                      "retrying could undo its work."
    with pytest.raises(chain.ChainRefused):
        chain.retry(failed, admin)
    # The executions page's Retry goes through the same guard.
    from webapp.executions import actions

    with pytest.raises(actions.NotRetried, match="has run against this project since"):
        actions.retry_run(failed, admin)
    assert chain.retry_refusal(run_of(second.id, "validate")) == "Only a failed or cancelled job can be retried."


def test_cancel_stops_the_waiting_steps(project, admin):
    queues.pause("processing", admin, "hold")
    sent = send(project, admin, "A1,Anna,Smith,1980-04-02,F,SW1A 1AA")
    assert chain.cancel(envelope(sent.id), admin) == 5
    assert envelope(sent.id).status == EnvelopeStatus.CANCELLED
    assert {status for _, status in steps(sent.id)} == {RunStatus.CANCELLED}
    with pytest.raises(chain.ChainRefused, match="cancelled already"):
        chain.cancel(envelope(sent.id), admin)
    assert chain.retry_refusal(run_of(sent.id, "validate")) == "Its envelope is cancelled."
    assert chain.rollback_refusal(envelope(sent.id)) == "It loaded no records: there is nothing to roll back."


def test_pause_on_failure_holds_the_next_envelope_until_a_retry_and_a_resume(project, admin, worker):
    queues.set_pause_on_failure("processing", True, admin)
    set_setting("linkage_backend", "spark")
    db.session.commit()
    first = send(project, admin, "A1,Anna,Smith,1980-04-02,F,SW1A 1AA")
    second = send(project, admin, "B1,Bert,Jones,1975-11-30,M,LS1 4AP")
    assert ended(first.id) == EnvelopeStatus.ERRORS
    db.session.expire_all()
    assert queues.state("processing").paused_run_id == run_of(first.id, "match").id
    # Paused: the second envelope's steps wait, and its status says it is still to be processed.
    assert wait_for(lambda: run_of(second.id, "validate").status == RunStatus.QUEUED, 5)
    assert envelope(second.id).status == EnvelopeStatus.SUCCESS_ACTIVE

    set_setting("linkage_backend", "duckdb")
    db.session.commit()
    chain.retry(run_of(first.id, "match"), admin)  # nothing ran since: allowed
    assert envelope(first.id).status == EnvelopeStatus.ERRORS_ACTIVE  # retried, not yet through
    queues.resume("processing", admin)
    assert ended(first.id) == EnvelopeStatus.SUCCESS
    assert ended(second.id) == EnvelopeStatus.SUCCESS
    first_end = max(run.finished_at for run in chain.runs_of(first.id))
    assert min(run.started_at for run in chain.runs_of(second.id)) >= first_end
