"""Job types that ship with Firetime: the self-test and the installation's housekeeping."""
import csv
import time
from datetime import timedelta

from marshmallow import Schema, fields, validate
from sqlalchemy import delete, func, select, update

from webapp.extensions import db
from webapp.jobtypes.registry import JobType, SystemJob, all_types, register
from webapp.models import Job, Run, RunFile, RunLogLine
from webapp.models.runs import FINAL_STATUSES
from webapp.models.settings import get_setting
from webapp.models.types import utcnow


class SelfTestFailure(Exception):
    pass


class SelfTestParams(Schema):
    duration = fields.Float(load_default=10.0, validate=validate.Range(0, 86400),
                            metadata={"label": "Duration (seconds)"})
    lines_per_second = fields.Float(load_default=2.0, validate=validate.Range(0, 1000),
                                    metadata={"label": "Log lines per second"})
    fail_at_end = fields.Boolean(load_default=False, metadata={"label": "Fail at the end"})
    output_csv = fields.Boolean(load_default=False, metadata={"label": "Write an output CSV"})


def selftest(ctx, duration, lines_per_second, fail_at_end, output_csv):
    """Log at a steady pace for a while, so an administrator can watch workers and logs work."""
    ctx.info(f"Self-test started: {duration:g} s at {lines_per_second:g} lines/s.")
    step = 1.0 / lines_per_second if lines_per_second else duration
    started = time.monotonic()
    written = 0
    while (elapsed := time.monotonic() - started) < duration:
        ctx.check_cancelled()
        written += 1
        ctx.info(f"Self-test line {written} at {elapsed:.1f} s.")
        ctx.progress(100 * elapsed / duration, f"{elapsed:.0f} of {duration:g} s")
        # Sleep in short slices so that a cancel is noticed quickly.
        wake = started + written * step
        while (left := wake - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
            ctx.check_cancelled()
    ctx.progress(100, "done")
    ctx.stat("lines", written)
    if output_csv:
        with ctx.output_file("selftest.csv") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "text"])
            for n in range(1, written + 1):
                writer.writerow([n, f"Self-test line {n}"])
    if fail_at_end:
        raise SelfTestFailure("The self-test was asked to fail at the end.")
    ctx.info("Self-test finished.")


def purge_history(ctx):
    """Delete runs and their logs older than the retention period, and the output files of
    those runs, except the archive; audit records stay.

    The archive rule: files of a job type that declares archive_files (exported files, SPEC:
    "Removing or deleting the job leaves the files") outlive their runs. Their RunFile rows stay,
    with run_id set to NULL (the run is gone; job, name, size, checksum and time remain for the
    archive's list and downloads), and the files stay on disk. Purging history never deletes
    them, whatever their age; the archive has no retention of its own yet: an archived file goes
    only when someone deletes it from the archive."""
    days = int(get_setting("retention_days"))
    cutoff = utcnow() - timedelta(days=days)
    old_runs = select(Run.id).where(Run.status.in_(FINAL_STATUSES), Run.created_at < cutoff)
    ids = list(db.session.scalars(old_runs))
    ctx.info(f"Retention is {days} days: {len(ids)} runs finished before {cutoff:%Y-%m-%d %H:%M} UTC.")
    archive_jobs = select(Job.id).where(Job.job_type.in_([jt.key for jt in all_types() if jt.archive_files]))
    files = removed_files = kept_files = 0
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start:chunk_start + 500]
        kept_files += db.session.execute(update(RunFile).where(
            RunFile.run_id.in_(chunk), RunFile.job_id.in_(archive_jobs)).values(run_id=None)).rowcount
        for file in db.session.scalars(select(RunFile).where(RunFile.run_id.in_(chunk))):
            removed_files += _remove_file(ctx, file)
            files += 1
        db.session.execute(delete(RunFile).where(RunFile.run_id.in_(chunk)))
        db.session.execute(delete(RunLogLine).where(RunLogLine.run_id.in_(chunk)))
        # Audit records of these runs keep their text; the foreign key empties their run_id
        # (ON DELETE SET NULL): the application itself never changes an audit record.
        db.session.execute(delete(Run).where(Run.id.in_(chunk)))
        db.session.commit()
        ctx.progress(100 * (chunk_start + len(chunk)) / max(len(ids), 1), "purging")
    ctx.stat("runs_deleted", len(ids))
    ctx.stat("files_deleted", removed_files)
    ctx.stat("archive_files_kept", kept_files)
    ctx.info(f"Deleted {len(ids)} runs and {files} file records ({removed_files} files on disk); "
             f"kept {kept_files} files of the archive.")


def _remove_file(ctx, file) -> int:
    import os

    path = os.path.join(ctx.files_dir, file.path)
    try:
        os.remove(path)
        return 1
    except FileNotFoundError:
        return 0


def activity_report(ctx):
    """A CSV of the last day's runs per job and status."""
    since = utcnow() - timedelta(days=1)
    rows = db.session.execute(
        select(Job.name, Run.status, func.count(Run.id))
        .join(Run.job)
        .where(Run.created_at >= since, Run.id != ctx.run_id)
        .group_by(Job.name, Run.status)
        .order_by(Job.name, Run.status)
    ).all()
    with ctx.output_file(f"activity-{utcnow():%Y%m%d-%H%M}.csv") as out:
        writer = csv.writer(out)
        writer.writerow(["job", "status", "runs"])
        writer.writerows(rows)
    ctx.stat("rows", len(rows))
    ctx.info(f"{len(rows)} job/status rows over the last day.")


register(JobType(
    key="system.selftest",
    label="Self-test",
    description="Logs at a steady pace for a while; checks that workers, live logs and email work.",
    run=selftest,
    params=SelfTestParams,
    user_creatable=True,
))
register(JobType(
    key="system.purge_history",
    label="Purge run history",
    run=purge_history,
    automatic_plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["02:30"]},
    queue="system",
    system_job=SystemJob("Purge run history",
                         "Deletes runs, logs and files older than the retention period; files of the export "
                         "archive and audit records stay."),
))
register(JobType(
    key="system.activity_report",
    label="Activity report",
    run=activity_report,
    automatic_plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["06:00"]},
    queue="system",
    system_job=SystemJob("Activity report",
                         "Writes a CSV of the last day's runs per job and status."),
))
