"""What the API reads and answers; the OpenAPI document is generated from these."""
import re
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate

from webapp.guards import MAX_ID
from webapp.models import RunStatus

API_STATUS = {
    RunStatus.QUEUED: "QUEUED",
    RunStatus.IN_PROGRESS: "IN_PROGRESS",
    RunStatus.SUCCEEDED: "SUCCEEDED",
    RunStatus.WARNINGS: "SUCCEEDED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "CANCELLED",
    RunStatus.SKIPPED: "SKIPPED",
}
STATUS_FILTER = {}
for _status, _api in API_STATUS.items():
    STATUS_FILTER.setdefault(_api, []).append(_status.value)


# A real calendar date (0001 to 9999, months' lengths, 29 February in leap years), then optionally a
# time of day. The OpenAPI document shows this same pattern, so a client that matches it is never refused.
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = "((0[13578]|1[02])(0[1-9]|[12][0-9]|3[01])|(0[469]|11)(0[1-9]|[12][0-9]|30)|02(0[1-9]|1[0-9]|2[0-8]))"
_LEAP_DAY = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)0229"
DATE_PATTERN = f"^({_YEAR}{_MONTH_DAY}|{_LEAP_DAY})(T([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9])?$"


class ApiDate(fields.String):
    """`20220221` or `20220221T061500`, in the server's time zone. A date alone means the
    start of that day for fromDate and the end of that day for toDate."""

    FORMAT = re.compile(DATE_PATTERN)

    def __init__(self, end_of_day=False, **kwargs):
        kwargs.setdefault("metadata", {}).update(pattern=DATE_PATTERN, example="20220221T061500")
        super().__init__(**kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value, attr, data, **kwargs):
        # strptime alone is lenient ("2022221" would be 2022-02-21): the shape is checked first.
        if not isinstance(value, str) or not self.FORMAT.fullmatch(value):
            raise ValidationError(f"{value!r} is not a date like 20220221 or 20220221T061500.")
        tz = ZoneInfo(current_app.config["TIMEZONE"])
        if "T" in value:
            moment = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=tz)
        else:
            day = datetime.strptime(value, "%Y%m%d").date()
            moment = datetime.combine(day, time.max if self.end_of_day else time.min, tzinfo=tz)
        try:
            moment.astimezone(timezone.utc)
        except OverflowError:  # 00010101 east of UTC, 99991231 west of it: before or after every run
            moment = (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=timezone.utc)
        return moment


def _limit(things):
    return fields.Integer(load_default=100, validate=validate.Range(1, 1000),
                          metadata={"description": f"At most this many {things} (1 to 1000, default 100)."})


class JobQuerySchema(Schema):
    limit = _limit("jobs")
    after = fields.Integer(validate=validate.Range(0, MAX_ID), metadata={
        "description": "Only jobs whose id is greater: the X-Next-Cursor of the previous page (the id of its "
                       "last job). Jobs come in the order of their ids."})


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
RUN_CURSOR_PATTERN = "^-?[0-9]{1,18}_[1-9][0-9]{0,9}$"


class RunCursor(fields.String):
    """Where a page of runs ended: the last run's creation time (microseconds since 1970 UTC)
    and id, "1645420499000000_42". Opaque to clients: they pass on X-Next-Cursor."""

    FORMAT = re.compile(RUN_CURSOR_PATTERN)
    BAD = "Not a cursor: pass on the X-Next-Cursor of the previous page."

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).update(pattern=RUN_CURSOR_PATTERN)
        super().__init__(**kwargs)

    @staticmethod
    def of(run) -> str:
        delta = run.created_at - _EPOCH
        return f"{(delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds}_{run.id}"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not self.FORMAT.fullmatch(value):
            raise ValidationError(self.BAD)
        micros, run_id = value.split("_")
        try:
            created_at = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            raise ValidationError(self.BAD) from None
        if int(run_id) > MAX_ID:
            raise ValidationError(self.BAD)
        return created_at, int(run_id)


class RunQuerySchema(Schema):
    fromDate = ApiDate(metadata={"description": "Runs created at or after this time, `20220221` (the start of "
                                                "that day) or `20220221T061500`, in the server's time zone "
                                                "(default: the earliest)."})
    toDate = ApiDate(end_of_day=True, metadata={"description": "Runs created at or before this time, `20220221` "
                                                               "(the whole day) or `20220221T061500`, in the "
                                                               "server's time zone (default: now). Before "
                                                               "fromDate, it selects no run."})
    status = fields.String(validate=validate.OneOf(sorted(STATUS_FILTER)),
                           metadata={"description": "IN_PROGRESS, SUCCEEDED or FAILED (or QUEUED, "
                                                    "CANCELLED, SKIPPED); absent: all."})
    limit = _limit("runs")
    after = RunCursor(metadata={"description": "Only runs after this point of the list: the X-Next-Cursor of the "
                                               "previous page. Unlike offset, a page does not shift when new "
                                               "runs are created meanwhile."})
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1),
                            metadata={"description": "Skip this many runs first (after `after`, if given)."})


class RunRequestSchema(Schema):
    error_messages = {"type": 'The body must be a JSON object such as {"args": "duration=5"}.'}

    args = fields.String(load_default="", allow_none=True, validate=validate.Length(max=2000), metadata={
        "description": "Space separated key=value pairs that override the job's parameters for this run. "
                       "The keys are the parameters of the job's type (a system.selftest job, such as the "
                       "example job, takes duration, lines_per_second, fail_at_end and output_csv; a job type "
                       "without parameters takes none); arguments the job refuses are a 400. May be empty.",
        "example": "duration=5 output_csv=yes"})


class PlanSchema(Schema):
    kind = fields.String()
    description = fields.String()


# The document's example job; the example run arguments are for it.
JOB_EXAMPLE = {
    "id": 12, "name": "Self-test", "description": "Logs for a while, to watch workers and logs work.",
    "type": "system.selftest", "typeLabel": "Self-test", "broken": False, "scope": "installation", "domain": None, "state": "active", "system": False,
    "plan": {"kind": "daily", "description": "daily Mon, Wed, Fri at 02:30"},
    "previousFireTime": "2022-02-21T01:30:00+00:00", "nextFireTime": "2022-02-23T01:30:00+00:00",
    "lastRunStatus": "SUCCEEDED",
}


class JobSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    type = fields.String(attribute="job_type", metadata={"description": "The job type's key."})
    typeLabel = fields.String(metadata={"description": "The job type's name; its key when it is not installed."})
    broken = fields.Boolean(metadata={"description": "No installed job type has this key: the job cannot run "
                                                    "(a run request is a 409) until it is installed again."})
    scope = fields.String()
    domain = fields.String(allow_none=True)
    state = fields.String()
    system = fields.Boolean()
    plan = fields.Nested(PlanSchema)
    previousFireTime = fields.DateTime(attribute="prev_fire_at", allow_none=True)
    nextFireTime = fields.DateTime(attribute="next_fire_at", allow_none=True)
    lastRunStatus = fields.String(allow_none=True, validate=validate.OneOf(sorted(STATUS_FILTER)))


class FileSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    contentType = fields.String(attribute="content_type")


class RunSchema(Schema):
    id = fields.Integer()
    jobId = fields.Integer(attribute="job_id")
    status = fields.Function(lambda run: API_STATUS[RunStatus(run.status)],
                             metadata={"type": "string", "enum": sorted(STATUS_FILTER)})
    detailedStatus = fields.String(attribute="status")
    trigger = fields.String()
    runBy = fields.Function(lambda run: run.requested_by.username if run.requested_by else None,
                            allow_none=True, metadata={"type": "string"})
    args = fields.String()
    fireTime = fields.DateTime(attribute="occurrence_at", allow_none=True)
    createdAt = fields.DateTime(attribute="created_at")
    startedAt = fields.DateTime(attribute="started_at", allow_none=True)
    finishedAt = fields.DateTime(attribute="finished_at", allow_none=True)
    progress = fields.Integer()
    progressMessage = fields.String(attribute="progress_message")
    warnings = fields.Integer(attribute="warning_count")
    errors = fields.Integer(attribute="error_count")
    message = fields.String()
    worker = fields.String(attribute="worker_name", allow_none=True)
    statistics = fields.Dict(attribute="stats")
    files = fields.List(fields.Nested(FileSchema))


class ApiErrorSchema(Schema):
    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    errors = fields.Dict()
