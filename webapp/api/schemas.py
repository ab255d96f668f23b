"""What the API reads and answers; the OpenAPI document is generated from these."""
import re
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate

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


class ApiDate(fields.String):
    """`20220221` or `20220221T061500`, in the server's time zone. A date alone means the
    start of that day for fromDate and the end of that day for toDate."""

    FORMAT = re.compile(r"\d{8}(T\d{6})?", re.ASCII)

    def __init__(self, end_of_day=False, **kwargs):
        kwargs.setdefault("metadata", {}).update(pattern=r"^\d{8}(T\d{6})?$", example="20220221T061500")
        super().__init__(**kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value, attr, data, **kwargs):
        # strptime alone is lenient ("2022221" would be 2022-02-21): the shape is checked first.
        if isinstance(value, str) and self.FORMAT.fullmatch(value):
            tz = ZoneInfo(current_app.config["TIMEZONE"])
            try:
                if "T" in value:
                    moment = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=tz)
                else:
                    day = datetime.strptime(value, "%Y%m%d").date()
                    moment = datetime.combine(day, time.max if self.end_of_day else time.min, tzinfo=tz)
                moment.astimezone(timezone.utc)  # 00010101 in a zone east of UTC is before year 1
            except (ValueError, OverflowError):
                pass
            else:
                return moment
        raise ValidationError(f"{value!r} is not a date like 20220221 or 20220221T061500.")


class RunQuerySchema(Schema):
    fromDate = ApiDate(metadata={"description": "Runs created at or after this time, `20220221` (the start of "
                                                "that day) or `20220221T061500`, in the server's time zone "
                                                "(default: the earliest)."})
    toDate = ApiDate(end_of_day=True, metadata={"description": "Runs created at or before this time, `20220221` "
                                                               "(the whole day) or `20220221T061500`, in the "
                                                               "server's time zone (default: now)."})
    status = fields.String(validate=validate.OneOf(sorted(STATUS_FILTER)),
                           metadata={"description": "IN_PROGRESS, SUCCEEDED or FAILED (or QUEUED, "
                                                    "CANCELLED, SKIPPED); absent: all."})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000),
                           metadata={"description": "At most this many runs (1 to 1000)."})
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1),
                            metadata={"description": "Skip this many runs first."})


class RunRequestSchema(Schema):
    error_messages = {"type": 'The body must be a JSON object such as {"args": "duration=5"}.'}

    args = fields.String(load_default="", allow_none=True, validate=validate.Length(max=2000),
                         metadata={"description": "Space separated key=value arguments; may be empty.",
                                   "example": "duration=5 output_csv=yes"})


class PlanSchema(Schema):
    kind = fields.String()
    description = fields.String()


class JobSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    type = fields.String(attribute="job_type")
    scope = fields.String()
    domain = fields.String(allow_none=True)
    state = fields.String()
    system = fields.Boolean()
    plan = fields.Nested(PlanSchema)
    previousFireTime = fields.DateTime(attribute="prev_fire_at")
    nextFireTime = fields.DateTime(attribute="next_fire_at")
    lastRunStatus = fields.String(allow_none=True)


class FileSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    contentType = fields.String(attribute="content_type")


class RunSchema(Schema):
    id = fields.Integer()
    jobId = fields.Integer(attribute="job_id")
    status = fields.Function(lambda run: API_STATUS[RunStatus(run.status)])
    detailedStatus = fields.String(attribute="status")
    trigger = fields.String()
    runBy = fields.Function(lambda run: run.requested_by.username if run.requested_by else None)
    args = fields.String()
    fireTime = fields.DateTime(attribute="occurrence_at")
    createdAt = fields.DateTime(attribute="created_at")
    startedAt = fields.DateTime(attribute="started_at")
    finishedAt = fields.DateTime(attribute="finished_at")
    progress = fields.Integer()
    progressMessage = fields.String(attribute="progress_message")
    warnings = fields.Integer(attribute="warning_count")
    errors = fields.Integer(attribute="error_count")
    message = fields.String()
    worker = fields.String(attribute="worker_name")
    statistics = fields.Dict(attribute="stats")
    files = fields.List(fields.Nested(FileSchema))


class ApiErrorSchema(Schema):
    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    errors = fields.Dict()
