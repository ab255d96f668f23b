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
