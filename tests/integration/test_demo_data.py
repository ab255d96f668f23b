"""The demo data `make run` seeds: Study A with its OID and clinical data, an ODM file waiting in
the demo import folder with an import job whose first run, with a real scheduler and worker,
imports it within a minute; a second seed adds nothing and writes no file again."""
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from flask import current_app
from sqlalchemy import func, select

from tests.conftest import wait_for
from webapp import demo
from webapp.extensions import db
from webapp.jobtypes import registry
from webapp.models import Dataset, Domain, Job, Run, RunStatus, Subject
from webapp.models.types import utcnow


@pytest.fixture
def demo_folder(ctx):
    folder = Path(current_app.config["IMPORT_DIR"]) / demo.DEMO_FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def subjects_of(name) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Subject.id)).join(Domain, Domain.id == Subject.domain_id)
                             .where(Domain.name == name))


def test_demo_seed_leaves_a_file_and_an_import_job_whose_first_run_imports_it(ctx, demo_folder, worker,
                                                                              start_process):
    result = ctx.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "40 Study A subjects" in result.output
    oids = dict(db.session.execute(select(Domain.name, Domain.oid)).all())
    assert oids["Study A"] == "STUDY-A" and oids["Site A1"] == "STUDY-A-SITE-A1"
    assert subjects_of("Study A") == 40
    waiting = demo_folder / demo.WAITING_FILE
    assert waiting.is_file()
    job = db.session.scalar(Job.live().where(Job.name == demo.IMPORT_JOB["name"]))
    assert (job.job_type, job.domain.name, job.params["subdirectory"]) == ("import_data", "Study A", "demo")
    assert (job.plan["kind"], job.plan["every"], job.plan["unit"]) == ("interval", 15, "minutes")
    assert job.next_fire_at <= utcnow() + timedelta(seconds=1)  # its first run is due at once

    started = utcnow()
    start_process("scheduler")
    run = wait_for(lambda: db.session.scalar(select(Run).where(Run.job_id == job.id, Run.status.in_(
        (RunStatus.SUCCEEDED, RunStatus.WARNINGS, RunStatus.FAILED))).execution_options(populate_existing=True)),
        60, message="the demo import's first run")
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.finished_at - started < timedelta(minutes=1)
    assert run.stats["files_imported"] == 1 and run.stats["values_inserted"] == 10 * 3 * 12
    assert subjects_of("Study A") == 50
    assert not waiting.exists()
    assert [p.name for p in (demo_folder / "processed").rglob("*.xml")] == [demo.WAITING_FILE]

    # A second seed (every `make run`) adds nothing and writes no new file.
    counts = [db.session.scalar(select(func.count()).select_from(model)) for model in (Domain, Job, Subject, Dataset)]
    again = ctx.test_cli_runner().invoke(args=["demo", "seed"])
    assert again.exit_code == 0, again.output
    assert "50 Study A subjects" in again.output
    assert [db.session.scalar(select(func.count()).select_from(m)) for m in (Domain, Job, Subject, Dataset)] == counts
    assert not waiting.exists()


def test_demo_seed_defines_vitals_and_its_weekly_export(ctx, demo_folder):
    assert registry.is_known("export_dataset")  # shipped: the demo always has its export job
    assert ctx.test_cli_runner().invoke(args=["demo", "seed"]).exit_code == 0
    vitals = db.session.scalar(select(Dataset).where(Dataset.name == "Vitals"))
    assert vitals.domain.name == "Study A"
    assert len(vitals.items) == 3 * 5  # five vital signs at each of three visits
    job = db.session.scalar(Job.live().where(Job.name == demo.EXPORT_JOB["name"]))
    assert (job.job_type, job.plan["kind"], job.plan["repeat"]) == ("export_dataset", "period", "weekly")
    assert int(job.params["dataset"]) == vitals.id
    # The first export follows the seed within a minute, then one a week.
    assert utcnow() < job.next_fire_at <= utcnow() + timedelta(seconds=61)


def test_demo_seed_adds_a_script_job_counting_runs_and_an_archived_one(ctx, worker):
    from tests.integration.test_engine import final
    from webapp.execution import dispatch
    from webapp.models import JobState, RunLogLine
    from webapp.models.scripts import ScriptVersion

    assert ctx.test_cli_runner().invoke(args=["demo", "seed"]).exit_code == 0
    counting = db.session.scalar(Job.live().where(Job.name == "Count runs of the last hour"))
    archived = db.session.scalar(Job.live().where(Job.name == "Old export clean-up"))
    assert counting.job_type == archived.job_type == "support.script"
    assert (counting.plan["kind"], counting.plan["seconds"], counting.run_as.username) == ("poll", 60, "api-bot")
    assert counting.state == JobState.ACTIVE and counting.next_fire_at is not None
    assert archived.state == JobState.ARCHIVED and archived.next_fire_at is None
    assert ScriptVersion.current(counting.id).number == 1

    run = final(dispatch.request_run(counting).id, timeout=60)
    assert run.status == RunStatus.SUCCEEDED, run.message
    lines = db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id)).all()
    counted = [line for line in lines if line.startswith("Runs created in the last hour: ")]
    assert counted and int(counted[0].rsplit(" ", 1)[1]) >= 1  # this run itself, at least


def test_demo_seed_adds_the_registry_l_project_and_its_administrator(ctx):
    from webapp.models import User
    from webapp.models.linkage import Envelope, EnvelopeStatus

    assert ctx.test_cli_runner().invoke(args=["demo", "seed"]).exit_code == 0
    project = db.session.scalar(select(Domain).where(Domain.name == "Registry L"))
    assert project.kind == "linkage"
    statuses = db.session.scalars(select(Envelope.status).where(Envelope.project_id == project.id)
                                  .order_by(Envelope.id)).all()
    assert statuses == [EnvelopeStatus.SUCCESS, EnvelopeStatus.ERRORS]
    admin = db.session.scalar(select(User).where(User.username == "registry-admin"))
    assert admin.role == "domain_admin" and admin.domain_id == project.id
    assert ctx.test_cli_runner().invoke(args=["demo", "seed"]).exit_code == 0  # again: nothing more
    assert db.session.scalar(select(func.count(Envelope.id))) == 2
