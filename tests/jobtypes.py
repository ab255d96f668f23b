"""Job types that exist only for the tests; workers load them through FIRETIME_JOBTYPE_MODULES."""
import time

from marshmallow import Schema, fields

from webapp.jobtypes.registry import JobType, register


class SleepParams(Schema):
    seconds = fields.Float(load_default=60)


def stubborn(ctx, seconds):
    """Ignores cancellation, as badly written job code would."""
    ctx.info("Sleeping without looking at cancel requests.")
    time.sleep(seconds)
    ctx.info("Woke up.")


def warns(ctx):
    ctx.warning("Something looks odd.")
    ctx.info("Carried on.")


register(JobType(key="tests.stubborn", label="Stubborn sleeper", run=stubborn, params=SleepParams))
register(JobType(key="tests.warns", label="Warns once", run=warns))


def long_line(ctx):
    """One line of a megabyte, as a job dumping a whole record would."""
    ctx.info("x" * 1_000_000)
    ctx.info("After the long line.")


def progress_per_row(ctx):
    """Reports progress for each of 100,000 rows, as a job reading a file row by row would."""
    rows = 100_000
    for row in range(1, rows + 1):
        ctx.progress(100 * row // rows, f"row {row} of {rows}")
    ctx.info("All rows read.")


register(JobType(key="tests.long_line", label="Logs a long line", run=long_line))
register(JobType(key="tests.progress_per_row", label="Progress per row", run=progress_per_row))


def audits_a_change(ctx):
    """Changes something and audits it under the user the job runs as."""
    from webapp.extensions import db
    from webapp.models.audit import record

    record("edit", "setting", None, actor=ctx.run_as, object_name="demo", after={"changed": True})
    db.session.commit()
    ctx.info(f"Audited as {ctx.run_as.username if ctx.run_as else 'system'}.")


register(JobType(key="tests.audits_a_change", label="Audits a change", run=audits_a_change))


def exports(ctx):
    """Writes a file to the archive of exported files, as an export job does."""
    with ctx.output_file("export.csv") as out:
        out.write("id,value\n1,a\n")


register(JobType(key="tests.exports", label="Exports to the archive", run=exports, archive_files=True))

SERIAL_QUEUE = "tests-serial"


def serial_step(ctx, seconds):
    """A step on a serial queue: says when it ran, so a test can check that no two overlapped."""
    ctx.info(f"start {time.time():.6f}")
    time.sleep(seconds)
    ctx.info(f"end {time.time():.6f}")


class StepParams(Schema):
    seconds = fields.Float(load_default=0.3)


register(JobType(key="tests.serial_step", label="Serial step", run=serial_step, params=StepParams,
                 queue=SERIAL_QUEUE, serial_queue=True))
