"""The envelopes page (SPEC 9, S4): the upload panel, All envelopes (rows expand to their jobs, a job to
its statistics), All jobs, the panels of envelopes processing now and recently errored, and the
processing queue's state with its Pause / Resume / Clear (posted to the queues routes).

Views parse, ask webapp.envelopes.queries or webapp.linkage.chain, and render. Each fragment is a
template named `_x.html` whose address also answers as a page. Every id goes through
permissions.get_envelope_or_404 / get_run_or_404, so a guessed id is a 404."""
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.csrf import validate_csrf
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup
from werkzeug.sansio.multipart import Data, Field, File, MultipartDecoder, NeedData
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice as Choice
from wtforms.validators import ValidationError

from webapp.auth.permissions import get_envelope_or_404, get_run_or_404
from webapp.envelopes import queries
from webapp.executions import actions
from webapp.guards import max_request_bytes
from webapp.jobtypes.linkage import KEY
from webapp.linkage import chain
from webapp.models.linkage import EnvelopeStatus

bp = Blueprint("envelopes", __name__, url_prefix="/envelopes")
HEAD_BYTES = 64 * 1024  # how much of a refused upload is read for the fields sent before the file


@bp.before_request
@login_required
def _signed_in():
    """Every envelopes page needs a signed-in user."""


class UploadForm(FlaskForm):
    """The upload panel. The project comes before the file, so that an upload refused at the size
    limit can still be told apart (see `_form_head`)."""
    project = SelectField("Linkage project", coerce=int)
    file = FileField("Zip or CSV file", validators=[FileRequired("Choose a zip envelope or a CSV file to upload.")],
                     description="A zip holding manifest.json and CSV files, or a single CSV file.")


def _upload_form(projects, **kwargs) -> UploadForm:
    form = UploadForm(**kwargs)
    form.project.choices = [Choice(project.id, project.name) for project in projects]
    if len(projects) == 1 and form.project.data is None:
        form.project.data = projects[0].id
    return form


def _upload_module():
    """webapp.linkage.upload, imported when used (it is written beside this page)."""
    from webapp.linkage import upload

    return upload


def _upload_limit() -> int:
    return _upload_module().limit_bytes()


# --- the page ----------------------------------------------------------------------------------

@bp.route("/")
def index():
    """The page; an HTMX request for one of its parts (the live panels, the list) gets that part."""
    view, problem = queries.parse_view(request.args)
    target = request.htmx.target if request.htmx else ""
    if target == "env-live":
        return render_template("envelopes/_live.html", **_live())
    if target == "env-list":
        return render_template("envelopes/_list.html", **_list(view, problem))
    return _page(view, problem)


def _page(view="envelopes", problem="", form=None, status=200):
    projects = queries.upload_projects(current_user)
    form = form or _upload_form(projects, formdata=None)
    return render_template("envelopes/index.html", form=form, projects=projects,
                           limit_mb=queries.upload_limit_mb(), **_live(), **_list(view, problem)), status


def _live() -> dict:
    """The parts that follow the processing: the queue's state, the envelopes processing now, the
    recently errored ones. Polled every 3 s while something is active, every 30 s otherwise."""
    processing, processing_count = queries.processing_now(current_user)
    queue, waiting = queries.queue_state(current_user)
    return dict(processing=processing, processing_count=processing_count, queue=queue, waiting=waiting,
                errored=queries.recently_errored(current_user), poll=3 if processing_count or waiting else 30)


def _list(view: str, problem: str) -> dict:
    if view == "jobs":
        page = queries.jobs_page(current_user)
        return dict(view=view, problem=problem, page=page, rows=queries.run_rows(page.items, wide=True))
    page = queries.envelopes_page(current_user)
    return dict(view=view, problem=problem, page=page, rows=queries.envelope_rows(page.items))


@bp.route("/<int:envelope_id>")
def envelope(envelope_id):
    """One envelope's rows (its row, and its jobs when ?open=1, with the jobs named in ?runs= showing
    their statistics): what the plus button and the poll of an active envelope swap in."""
    found = get_envelope_or_404(current_user, envelope_id)
    opened = request.args.get("open") == "1" or not request.htmx
    row = queries.envelope_rows([found], {found.id} if opened else (),
                                queries.parse_ids(request.args.get("runs", "")))[0]
    template = "envelopes/_envelope.html" if request.htmx else "envelopes/envelope.html"
    return render_template(template, row=row)


@bp.route("/<int:envelope_id>/notifications")
def notifications(envelope_id):
    """Everything raised while the envelope was processed (a popup; a page without JavaScript)."""
    found = get_envelope_or_404(current_user, envelope_id)
    template = "envelopes/_notifications.html" if request.htmx else "envelopes/notifications.html"
    return render_template(template, envelope=found, notifications=queries.notifications(found))


@bp.route("/runs/<int:run_id>")
def run(run_id):
    """One job's row, with its statistics when ?open=1 (?wide=1: as the All jobs view shows it)."""
    found = get_run_or_404(current_user, run_id)
    opened = request.args.get("open") == "1" or not request.htmx
    row = queries.run_rows([found], {found.id} if opened else (),
                           wide=request.args.get("wide") == "1" or not request.htmx)[0]
    template = "envelopes/_run.html" if request.htmx else "envelopes/run.html"
    return render_template(template, row=row)


# --- actions -----------------------------------------------------------------------------------

@bp.route("/upload", methods=["POST"])
@max_request_bytes(_upload_limit)
def upload():
    """Take an envelope (zip or CSV) into a project the user sees; its chain is queued."""
    projects = queries.upload_projects(current_user)
    form = _upload_form(projects)
    if not form.validate_on_submit():
        return _page(form=form, status=400)
    project = next(project for project in projects if project.id == form.project.data)
    upload_module = _upload_module()
    try:
        received = upload_module.receive(current_user, project, form.file.data)
    except upload_module.UploadRefused as exc:
        return _refused(form, str(exc), None, 400)
    if received.status == EnvelopeStatus.CORRUPT:  # over the limit while it streamed
        return _refused(form, received.reason, received, 413)
    flash(f"Envelope #{received.id} “{received.name}” is uploaded to {project.name}: its jobs are queued.", "success")
    return redirect(url_for(".index"))


def _refused(form, reason: str, refused, status: int):
    """The form again, the reason at the file field, naming the corrupt envelope that records it."""
    form.file.errors = [*form.file.errors, reason + (f" It is listed as envelope #{refused.id}." if refused else "")]
    return _page(form=form, status=status)


@bp.errorhandler(413)
def too_large(error):
    """An upload over the limit is refused before its body is read (webapp/guards.py): the form comes
    back with the reason at the file field, and, when the fields sent before the file say which
    project it was for (with a valid CSRF token), the project lists it as a corrupt envelope."""
    if request.endpoint != "envelopes.upload":
        return render_template("errors/error.html", error=error), 413
    projects = queries.upload_projects(current_user)
    head = _form_head()
    form = _upload_form(projects, formdata=None)
    reason = _upload_module().too_large_reason()
    project = _head_project(head, projects)
    refused = None
    if project is not None:
        form.project.data = project.id
        refused = _upload_module().record_refused(current_user, project, head.get("filename", ""), reason)
    return _refused(form, reason, refused, 413)


def _form_head() -> dict:
    """The plain fields a multipart body sends before its file, and the file's name: read from the
    start of a body the guard refused unread (the form sends the token and the project first). {}
    when there is none to read (a chunked body, read already) or it does not parse."""
    length, boundary = request.content_length or 0, request.mimetype_params.get("boundary", "")
    # Only a body the guard refused by its length is unread: reading one read already would wait for
    # bytes that never come.
    if request.mimetype != "multipart/form-data" or not boundary or length <= (request.max_content_length or 0):
        return {}
    try:
        decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=HEAD_BYTES)
        decoder.receive_data(request.environ["wsgi.input"].read(min(HEAD_BYTES, length)))
        fields, name = {}, None
        while not isinstance(event := decoder.next_event(), NeedData):
            if isinstance(event, File):
                fields["filename"] = event.filename or ""  # upload.record_refused cleans it
                break
            if isinstance(event, Field):
                name, fields[event.name] = event.name, ""
            elif isinstance(event, Data) and name:
                fields[name] += event.data.decode("utf-8", "replace")
        return fields
    except (ValueError, UnicodeError, OSError):
        return {}


def _head_project(head: dict, projects):
    """The project the refused upload names, if its CSRF token is good and the user sees it."""
    try:
        validate_csrf(head.get("csrf_token", ""))
    except ValidationError:
        return None
    wanted = head.get("project", "").strip()
    return next((project for project in projects if str(project.id) == wanted), None)


@bp.route("/<int:envelope_id>/rollback", methods=["POST"])
def rollback(envelope_id):
    """Queue the envelope's rollback (S4): it takes out everything the envelope loaded."""
    found = get_envelope_or_404(current_user, envelope_id)
    return _act(lambda: chain.request_rollback(found, current_user), f"Envelope #{found.id} is not rolled back",
                lambda queued: _run_link("The rollback of envelope #{} is queued as job {}.", found.id, queued.id))


@bp.route("/<int:envelope_id>/cancel", methods=["POST"])
def cancel(envelope_id):
    """Cancel the envelope: its waiting jobs are cancelled, a running one is asked to stop."""
    found = get_envelope_or_404(current_user, envelope_id)
    return _act(lambda: chain.cancel(found, current_user), f"Envelope #{found.id} is not cancelled",
                lambda count: f"Envelope #{found.id} is cancelled ({count} job{'' if count == 1 else 's'} "
                              "cancelled or asked to stop).")


@bp.route("/runs/<int:run_id>/retry", methods=["POST"])
def retry(run_id):
    """Retry a failed job: a step of an envelope under S4's guard (its chain goes on from there when it
    succeeds), another system job as the executions page retries it."""
    found = get_run_or_404(current_user, run_id)
    again = (lambda: chain.retry(found, current_user)) if found.job.job_type == KEY else \
        (lambda: actions.retry_run(found, current_user))
    return _act(again, f"Job #{found.id} is not retried",
                lambda new: _run_link("Job #{} is retried as job {}.", found.id, new.id))


def _act(attempt, refused: str, done):
    """Do it (the chain functions audit what they do), say what happened, and go back to the page."""
    try:
        result = attempt()
    except (chain.ChainRefused, actions.NotRetried) as exc:
        flash(f"{refused}: {exc}", "error")
    else:
        flash(done(result), "success")
    return redirect(_back())


def _run_link(sentence: str, subject: int, run_id: int) -> Markup:
    link = Markup('<a href="{}" data-log-popup="{}">#{}</a>').format(url_for("runs.detail", run_id=run_id), run_id,
                                                                     run_id)
    return Markup(sentence).format(subject, link)


def _back() -> str:
    """The page as the user had it (view, sort, page), or the plain page."""
    referrer, here = urlsplit(request.referrer or ""), urlsplit(request.host_url)
    page = url_for(".index")
    if (referrer.scheme, referrer.netloc, referrer.path) == (here.scheme, here.netloc, page):
        return urlunsplit(("", "", page, referrer.query, ""))
    return page
