"""What the API reads and answers; the OpenAPI document is generated from these."""
from datetime import datetime, time
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


class ApiDate(fields.Field):
    """`20220221` or `20220221T061500`, in the server's time zone. A date alone means the
    start of that day for fromDate and the end of that day for toDate."""

    def __init__(self, end_of_day=False, **kwargs):
        super().__init__(**kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value, attr, data, **kwargs):
        tz = ZoneInfo(current_app.config["TIMEZONE"])
        for fmt, is_date in (("%Y%m%dT%H%M%S", False), ("%Y%m%d", True)):
            try:
                parsed = datetime.strptime(value, fmt)
            except (TypeError, ValueError):
                continue
            if is_date and self.end_of_day:
                parsed = datetime.combine(parsed.date(), time(23, 59, 59, 999999))
            return parsed.replace(tzinfo=tz)
        raise ValidationError(f"{value!r} is not a date like 20220221 or 20220221T061500.")


class RunQuerySchema(Schema):
    fromDate = ApiDate(metadata={"description": "Runs created at or after this time (default: the earliest)."})
    toDate = ApiDate(end_of_day=True, metadata={"description": "Runs created at or before this time "
                                                               "(default: now)."})
    status = fields.String(validate=validate.OneOf(sorted(STATUS_FILTER)),
                           metadata={"description": "IN_PROGRESS, SUCCEEDED or FAILED (or QUEUED, "
                                                    "CANCELLED, SKIPPED); absent: all."})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0))


class RunRequestSchema(Schema):
    args = fields.String(load_default="", allow_none=True, validate=validate.Length(max=2000),
                         metadata={"description": "Space separated key=value arguments; may be empty."})


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
