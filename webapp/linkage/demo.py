"""Demo data for linkage (issue 11): the project "Registry L" with two envelopes processed already,
one of them with errors (rejected rows), and the sample envelope of docs/samples for a newcomer to
upload.

The demo's envelopes go through the real step functions, run here in the calling process
(`run_here`) rather than by a worker: the envelopes page has finished chains to show at the first
start, before any worker runs. The same runner serves tests that need a chain without a worker.
"""
import io
import os
import tempfile
import traceback
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from webapp.execution.context import RunCancelled, RunContext
from webapp.extensions import db
from webapp.jobtypes.linkage import STEPS
from webapp.linkage import chain, synth, upload
from webapp.models import Domain, Run, RunFile, RunLogLine, RunStatus, Trigger
from webapp.models.linkage import LINKAGE_KIND, Envelope, EnvelopeStatus
from webapp.models.types import utcnow

PROJECT = "Registry L"
SAMPLE_RECORDS, SAMPLE_SEED = 50, 11


def seed(admin) -> dict:
    """The project and its two processed envelopes; a second call adds nothing."""
    project = db.session.scalar(select(Domain).where(Domain.name == PROJECT))
    if project is None:
        project = Domain(name=PROJECT, kind=LINKAGE_KIND)
        db.session.add(project)
        db.session.commit()
    if project.kind != LINKAGE_KIND or db.session.scalar(select(Envelope.id).where(Envelope.project_id == project.id)):
        return {"envelopes": 0}
    first, second = _demo_envelopes()
    for name, content in (("registry-2023.zip", first), ("registry-2024.zip", second)):
        envelope = upload.store(admin, project, name, io.BytesIO(content))
        run_here(envelope, admin)
    return {"envelopes": 2}


def _demo_envelopes() -> tuple[bytes, bytes]:
    """Two envelopes of one synthetic population: the same people recur across them (the match
    step links them), and the second has rows load rejects: an id the first brought, an id twice,
    a date that is not one, a row without a surname."""
    records, _truth = synth.population(70, duplicate_rate=0.2, seed=7)
    first = [dict(record, id=f"A{number:04d}") for number, record in enumerate(records[:40], 1)]
    second = [dict(record, id=f"B{number:04d}") for number, record in enumerate(records[40:], 1)]
    second += [dict(second[0], first_name="Ann", surname="Example"),          # id twice in the envelope
               dict(first[0]),                                                # id of the first envelope
               dict(second[1], id="B0901", dob="31/02/1980"),                 # not a date
               dict(second[2], id="B0902", surname="")]                       # no surname
    return _zip(first), _zip(second)


def _zip(records: list[dict]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = synth.write_envelope(os.path.join(folder, "envelope.zip"), records)
        with open(path, "rb") as handle:
            return handle.read()


def write_samples(folder: str) -> list[str]:
    """docs/samples: an envelope zip of SAMPLE_RECORDS records (a few the same person twice) and the
    same records as one CSV with the default headers (an implicit envelope)."""
    import csv

    records, _truth = synth.population(SAMPLE_RECORDS, duplicate_rate=0.1, seed=SAMPLE_SEED)
    os.makedirs(folder, exist_ok=True)
    zipped = os.path.join(folder, "sample-envelope.zip")
    with open(zipped, "wb") as out:
        out.write(_zip(records))
    plain = os.path.join(folder, "sample-people.csv")
    with open(plain, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return [zipped, plain]


# --- the chain, here ---------------------------------------------------------------------------------

def run_here(envelope: Envelope, user=None) -> list[Run]:
    """Run the envelope's five steps one after the other in this process, as runs of the project's
    processing job with their logs, statistics and files, as a worker would; stops at the first
    step that does not succeed (a failed validate makes the envelope Corrupt, as chain.after_step
    does). The envelope's status is then set from its runs."""
    job = chain.project_job(envelope.project)
    runs = []
    for step in STEPS:
        run = _step_here(job, envelope, step, user)
        runs.append(run)
        if run.status not in chain.SUCCEEDED:
            if step == "validate":
                envelope.status, envelope.reason, envelope.finished_at = EnvelopeStatus.CORRUPT, run.message, utcnow()
                db.session.commit()
            break
    chain.refresh_status(envelope)
    return runs


def _step_here(job, envelope: Envelope, step: str, user) -> Run:
    now = utcnow()
    run = Run(job_id=job.id, trigger=Trigger.ENVELOPE, requested_by_id=getattr(user, "id", None),
              args=chain.args_of(step, envelope.id), envelope_id=envelope.id, status=RunStatus.IN_PROGRESS,
              created_at=now, enqueued_at=now, started_at=now, worker_name="in-process")
    db.session.add(run)
    db.session.commit()
    ctx = RunContext(run_id=run.id, job_id=job.id, live=None, files_dir=current_app.config["FILES_DIR"],
                     args=run.args.split())
    status, message = RunStatus.SUCCEEDED, ""
    try:
        chain.run_step(ctx, step, envelope.id)
    except RunCancelled as exc:
        status, message = RunStatus.CANCELLED, str(exc)
    except Exception as exc:  # as the runner: the run fails with the message, nothing half-written stays
        db.session.rollback()
        message = f"{type(exc).__name__}: {exc}"
        ctx.error(message)
        ctx.debug(traceback.format_exc())
    if status == RunStatus.SUCCEEDED and ctx.error_count:
        status, message = RunStatus.FAILED, ctx.first_error
    elif status == RunStatus.SUCCEEDED and ctx.warning_count:
        status = RunStatus.WARNINGS
    _record_end(run, ctx, status, message)
    return run


def _record_end(run: Run, ctx: RunContext, status: str, message: str):
    db.session.refresh(run)
    run.status, run.message, run.finished_at = status, message, max(utcnow(), run.started_at + timedelta(milliseconds=1))
    run.progress, run.progress_message = ctx.percent, ctx.progress_message
    run.warning_count, run.error_count, run.line_count = ctx.warning_count, ctx.error_count, len(ctx.lines)
    run.stats = dict(ctx.stats)
    db.session.add_all(RunLogLine(run_id=run.id, seq=line["seq"], at=line["at"], level=line["level"],
                                  message=line["message"]) for line in ctx.lines)
    db.session.add_all(RunFile(run_id=run.id, job_id=run.job_id, name=f.name, path=f.path, size=f.size,
                               sha256=f.sha256, content_type=f.content_type) for f in ctx.files)
    db.session.commit()
