"""The REST API (token auth, the UI's visibility rules, JSON errors)."""
from flask import abort, g, request, send_file, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import joinedload, selectinload

from webapp import presenters
from webapp.api.schemas import (API_STATUS, JOB_EXAMPLE, STATUS_FILTER, ApiErrorSchema, JobQuerySchema,
                                JobSchema, RunCursor, RunQuerySchema, RunRequestSchema, RunSchema)
from webapp.auth.permissions import get_job_or_404, get_run_or_404, jobs_query
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.jobs.queries import latest_runs
from webapp.jobtypes import registry
from webapp.models import ApiToken, Job, Run, RunStatus, Trigger
from webapp.models.types import utcnow
from webapp.runs.files import media_type, open_run_file

blp = Blueprint("api", __name__, url_prefix="/api", description="Scheduled jobs and their runs.")

# The app's one id converter (webapp.guards): an id no INTEGER column holds is a 404.
JOB_ID = "<int:jobId>"
RUN_ID = "<int:runId>"

# The error answers of every call (a JSON ApiError each); `errors()` adds an operation's own.
COMMON_ERRORS = {
    400: "A query value holding a control character, or longer than 2048 characters.",
    401: "No valid API token.",
    429: "Too many requests with a bad API token from this address; wait the seconds Retry-After says.",
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}, "required": True}},
    429: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}, "required": True}},
}
NOT_FOUND = "No such job, or not one the caller may see."


def errors(own: dict | None = None):
    """Document an operation's error answers: those of every call, and its own (which may say
    more about 400)."""
    def decorate(view):
        for code, description in sorted({**COMMON_ERRORS, **(own or {})}.items()):
            view = blp.alt_response(code, schema=ApiErrorSchema, description=description,
                                    headers=ERROR_HEADERS.get(code))(view)
        return view
    return decorate


@blp.before_request
def authenticate():
    """Every API call carries `Authorization: Bearer <token>`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, description="Send an API token as 'Authorization: Bearer <token>'.")
    user = ApiToken.user_for(token.strip())
    if user is None:
        abort(401, description="The API token is not valid.")
    db.session.commit()  # last_used_at
    g.api_user = user


def _job_payload(job, latest):
    run = latest.get(job.id)
    return {
        "id": job.id, "name": job.name, "description": job.description, "job_type": job.job_type,
        "typeLabel": presenters.type_label(job), "broken": presenters.is_broken(job),
        "scope": job.scope, "domain": job.domain.name if job.domain else None, "state": job.state,
        "system": job.system, "plan": {"kind": job.plan.get("kind"), "description": presenters.describe_plan(job)},
        "prev_fire_at": job.prev_fire_at, "next_fire_at": job.next_fire_at,
        "lastRunStatus": API_STATUS[RunStatus(run.status)] if run else None,
    }


# A list answers one page, a JSON array as before paging; where more follow, the headers say how
# to ask for the next page.
PAGE_HEADERS = {
    "X-Next-Cursor": {"description": "Present when more follow: pass it as `after` for the next page.",
                      "schema": {"type": "string"}},
    "Link": {"description": 'Present when more follow: `<URL of the next page>; rel="next"`.',
             "schema": {"type": "string"}},
}


def _page(items: list, limit: int, cursor_of, schema) -> tuple[list, dict]:
    """The first `limit` of `items` (read with one more, to know whether more follow) and the
    headers that lead to the next page: the same query (`schema`'s parameters) from the cursor on."""
    if len(items) <= limit:
        return items, {}
    items = items[:limit]
    cursor = cursor_of(items[-1])
    kept = {key: value for key, value in request.args.items() if key in schema.fields and key != "offset"}
    url = url_for(request.endpoint, **{**kept, **request.view_args, "after": cursor})
    return items, {"X-Next-Cursor": cursor, "Link": f'<{url}>; rel="next"'}


@blp.route("/scheduled-jobs")
class ScheduledJobs(MethodView):
    @blp.arguments(JobQuerySchema, location="query", error_status_code=400)
    @blp.response(200, JobSchema(many=True), example=[JOB_EXAMPLE], headers=PAGE_HEADERS)
    @errors({400: "A bad limit or after (or a query value with a control character)."})
    def get(self, query):
        """The jobs the caller may see, in the order of their ids, a page at a time."""
        select_jobs = jobs_query(g.api_user).options(selectinload(Job.domain)).order_by(Job.id)
        if "after" in query:
            select_jobs = select_jobs.where(Job.id > query["after"])
        jobs, headers = _page(db.session.scalars(select_jobs.limit(query["limit"] + 1)).all(), query["limit"],
                              lambda job: str(job.id), JobQuerySchema())
        latest = latest_runs([job.id for job in jobs])
        return [_job_payload(job, latest) for job in jobs], headers


@blp.route(f"/scheduled-jobs/{JOB_ID}")
class ScheduledJob(MethodView):
    @blp.response(200, JobSchema, example=JOB_EXAMPLE)
    @errors({404: NOT_FOUND})
    def get(self, jobId):
        """One job."""
        job = get_job_or_404(g.api_user, jobId)
        return _job_payload(job, latest_runs([job.id]))


@blp.route(f"/scheduled-jobs/{JOB_ID}/runs")
class JobRuns(MethodView):
    @blp.arguments(RunQuerySchema, location="query", error_status_code=400)
    @blp.response(200, RunSchema(many=True), headers=PAGE_HEADERS)
    @errors({400: "A bad date, status, limit, after or offset (or a query value with a control character).",
             404: NOT_FOUND})
    def get(self, query, jobId):
        """Runs of the job created in a time range, newest first, a page at a time."""
        job = get_job_or_404(g.api_user, jobId)
        select_runs = select(Run).where(Run.job_id == job.id)
        if "fromDate" in query:
            select_runs = select_runs.where(Run.created_at >= query["fromDate"])
        select_runs = select_runs.where(Run.created_at <= query.get("toDate", utcnow()))
        if "status" in query:
            select_runs = select_runs.where(Run.status.in_(STATUS_FILTER[query["status"]]))
        if "after" in query:
            created_at, run_id = query["after"]
            select_runs = select_runs.where(or_(Run.created_at < created_at,
                                                and_(Run.created_at == created_at, Run.id < run_id)))
        select_runs = (select_runs.options(selectinload(Run.files), joinedload(Run.requested_by))
                       .order_by(Run.created_at.desc(), Run.id.desc())
                       .limit(query["limit"] + 1).offset(query["offset"]))
        return _page(db.session.scalars(select_runs).all(), query["limit"], RunCursor.of, RunQuerySchema())

    @blp.arguments(RunRequestSchema, required=False, error_status_code=400,
                   description="May be absent; an absent or empty args runs the job with its parameters.")
    @blp.response(201, RunSchema)
    @errors({400: "A body that is not a JSON object as described, nested too deeply, or holding a control "
                  "character; or arguments the job refuses.",
             404: NOT_FOUND,
             409: "The job is removed or archived, or its job type is not installed.",
             413: "A body over the size limit (FIRETIME_MAX_REQUEST_BYTES, 1 MiB by default)."})
    def post(self, body, jobId):
        """Queue a run of the job; it waits if a run of the job is in progress."""
        job = get_job_or_404(g.api_user, jobId)
        if not request.is_json and (request.content_length or request.get_data(cache=True)):
            # The body is only read as JSON; a form or text body would be dropped without a word.
            abort(400, description='Send the body as JSON ({"args": "..."}) with Content-Type: application/json.')
        try:
            return dispatch.request_run(job, trigger=Trigger.API, user=g.api_user, args=body.get("args") or "")
        except registry.InvalidArguments as exc:
            abort(400, description=str(exc))
        except registry.UnknownJobType:
            abort(409, description=f"Job {job.name!r} has type {job.job_type!r}, which this installation "
                                   "does not have; it cannot run.")
        except dispatch.NotRunnable as exc:
            abort(409, description=str(exc))


def _run_or_404(job_id, run_id):
    """A run of a job the caller may see (a deleted job's runs are gone with it), under that job."""
    job = get_job_or_404(g.api_user, job_id)
    return get_run_or_404(g.api_user, run_id, job_id=job.id)


@blp.route(f"/scheduled-jobs/{JOB_ID}/runs/{RUN_ID}")
class JobRun(MethodView):
    @blp.response(200, RunSchema)
    @errors({404: "No such job or run, or not one the caller may see."})
    def get(self, jobId, runId):
        """One run."""
        return _run_or_404(jobId, runId)


@blp.route(f"/scheduled-jobs/{JOB_ID}/runs/{RUN_ID}/result-file")
class JobRunFile(MethodView):
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="*/*",
                  description="The first file the run produced, as an attachment, with its own content type "
                              "(text/csv for an export's CSV).")
    @errors({404: "No such job or run, the run produced no file, or the file is purged.",
             409: "The run has not finished."})
    def get(self, jobId, runId):
        """The file the run produced."""
        run = _run_or_404(jobId, runId)
        if not run.is_final:
            abort(409, description="The run has not finished; its file is not ready.")
        if not run.files:
            abort(404, description="This run produced no file.")
        handle = open_run_file(run.files[0])
        if handle is None:
            abort(404, description="The run's file is no longer on disk (purged by retention).")
        return send_file(handle, mimetype=media_type(run.files[0]), as_attachment=True,
                         download_name=run.files[0].name)
