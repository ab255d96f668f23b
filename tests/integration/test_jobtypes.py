"""The job types that ship: self-test, purge history, activity report."""
import csv
import os
from datetime import timedelta

from sqlalchemy import func, select

from tests.factories import make_job
from tests.integration.test_engine import final
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import AuditEvent, Job, Run, RunFile, RunLogLine, RunStatus, Setting
from webapp.models.audit import record
from webapp.models.types import utcnow
from webapp.scheduling import sync


def old_run(job, days_ago, with_file_dir=None):
    at = utcnow() - timedelta(days=days_ago)
    run = Run(job_id=job.id, trigger="hand", status=RunStatus.SUCCEEDED, created_at=at, started_at=at,
              finished_at=at)
    db.session.add(run)
    db.session.flush()
    db.session.add(RunLogLine(run_id=run.id, seq=1, at=at, level="info", message="old line"))
    if with_file_dir:
        path = os.path.join(with_file_dir, "runs", str(run.id), "out.csv")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write("a,b\n")
        db.session.add(RunFile(run_id=run.id, job_id=job.id, name="out.csv", path=f"runs/{run.id}/out.csv"))
    record("run_now", "job", job, actor=None, after={"run_id": run.id}, run=run)
    db.session.commit()
    return run


def test_purge_history_deletes_old_runs_logs_and_files_but_keeps_audit(ctx, worker):
    sync.ensure_system_jobs()
    purge = db.session.scalar(select(Job).where(Job.job_type == "system.purge_history"))
    target = make_job(name="Busy job")
    db.session.add(Setting(key="retention_days", value=30))
    db.session.commit()
    files_dir = ctx.config["FILES_DIR"]
    old = old_run(target, 40, files_dir)
    recent = old_run(target, 5, files_dir)
    old_id, recent_id = old.id, recent.id
    old_path = os.path.join(files_dir, "runs", str(old_id), "out.csv")
    audit_before = db.session.scalar(select(func.count(AuditEvent.id)))

    run = final(dispatch.request_run(purge).id)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.stats["runs_deleted"] == 1 and run.stats["files_deleted"] == 1
    assert db.session.get(Run, old_id) is None and not os.path.exists(old_path)
    assert db.session.scalar(select(func.count(RunLogLine.id)).where(RunLogLine.run_id == old_id)) == 0
    assert db.session.get(Run, recent_id) is not None
    # Audit stays: the only new record is the purge run's own "run now".
    assert db.session.scalar(select(func.count(AuditEvent.id))) == audit_before + 1


def test_activity_report_writes_runs_per_job_and_status(ctx, worker):
    sync.ensure_system_jobs()
    report = db.session.scalar(select(Job).where(Job.job_type == "system.activity_report"))
    job = make_job(name="Counted job")
    for _ in range(2):
        final(dispatch.request_run(job).id)
    failing = make_job(name="Failing job", params={"duration": 0, "lines_per_second": 0, "fail_at_end": True})
    final(dispatch.request_run(failing).id)
    run = final(dispatch.request_run(report).id)
    assert run.status == RunStatus.SUCCEEDED, run.message
    path = os.path.join(ctx.config["FILES_DIR"], run.files[0].path)
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["job", "status", "runs"]
    assert ["Counted job", "succeeded", "2"] in rows and ["Failing job", "failed", "1"] in rows


def test_warnings_make_a_run_succeed_with_warnings(ctx, worker):
    job = make_job(job_type="tests.warns", params={})
    run = final(dispatch.request_run(job).id)
    assert run.status == RunStatus.WARNINGS and run.warning_count == 1


def test_job_code_audits_under_the_user_the_job_runs_as(ctx, worker):
    from tests.factories import make_user

    operator = make_user(username="night-operator")
    job = make_job(job_type="tests.audits_a_change", params={}, run_as_id=operator.id)
    run = final(dispatch.request_run(job).id)
    assert run.status == RunStatus.SUCCEEDED
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.object_name == "demo"))
    assert (event.actor_id, event.actor_name) == (operator.id, "night-operator")


def test_job_type_modules_come_from_the_configuration_read_once(ctx, monkeypatch):
    from config import Config
    from webapp.jobtypes import registry

    monkeypatch.setenv("FIRETIME_JOBTYPE_MODULES", " tests.jobtypes, ,webapp.jobtypes.system ")
    assert Config().JOBTYPE_MODULES == ("tests.jobtypes", "webapp.jobtypes.system")
    assert ctx.config["JOBTYPE_MODULES"] == ("tests.jobtypes",)  # as the test session set it
    monkeypatch.setenv("FIRETIME_JOBTYPE_MODULES", "no.such.module")
    assert registry.get("tests.warns").label == "Warns once"  # loaded once; not read again


def test_purge_history_keeps_the_archive_of_exported_files(ctx, worker):
    sync.ensure_system_jobs()
    purge = db.session.scalar(select(Job).where(Job.job_type == "system.purge_history"))
    export = make_job(name="Monthly export", job_type="tests.exports", params={})
    db.session.add(Setting(key="retention_days", value=30))
    db.session.commit()
    files_dir = ctx.config["FILES_DIR"]
    old_export = old_run(export, 40, files_dir)
    old_id = old_export.id
    path = os.path.join(files_dir, "runs", str(old_id), "out.csv")
    export.deleted_at = utcnow()  # deleting the job leaves its files too
    db.session.commit()

    run = final(dispatch.request_run(purge).id)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.stats == {"runs_deleted": 1, "files_deleted": 0, "archive_files_kept": 1}
    assert db.session.get(Run, old_id) is None  # the history goes
    kept = db.session.scalar(select(RunFile).where(RunFile.job_id == export.id))
    assert kept.run_id is None and kept.name == "out.csv" and os.path.exists(path)  # the archive stays
    assert db.session.scalar(select(func.count(RunLogLine.id)).where(RunLogLine.run_id == old_id)) == 0
