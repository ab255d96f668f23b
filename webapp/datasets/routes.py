"""Datasets (S0 "Define Dataset"): named selections of a domain's items, listed, created, changed,
deleted and exported by hand (Export now, a run of the domain's extract job on the export queue).
People see and manage the datasets of the domains they see; any other id is a 404."""
from __future__ import annotations  # the list view is named `list`

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp.auth.permissions import get_dataset_or_404
from webapp.datasets import editing, queries
from webapp.datasets.forms import DatasetForm, ExportNowForm
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.forms import ConfirmForm
from webapp.jobs.editing import domain_choices, parse_id
from webapp.jobtypes import export_dataset, registry
from webapp.models import Dataset, Domain, Trigger
from webapp.models.clinical import FORMAT_LABELS, ExportFormat
from webapp.pagination import paginate

bp = Blueprint("datasets", __name__, url_prefix="/datasets")


@bp.before_request
@login_required
def _signed_in():
    """Every dataset page needs a signed-in user."""


@bp.context_processor
def _labels():
    return {"format_labels": {f.value: label for f, label in FORMAT_LABELS.items()}}


@bp.route("/")
def list():
    """The datasets of the domains the user sees: found, filtered by domain, sorted, paged."""
    filters = queries.ListFilters.from_args(request.args, parse_id)
    page = paginate(queries.list_query(current_user, filters), queries.SORTS, "name", tiebreak=Dataset.id)
    context = {"page": page, "filters": filters, "args": filters.args(),
               "item_counts": queries.item_counts([dataset.id for dataset in page.items])}
    if request.htmx and request.htmx.target == "datasets-table":
        return render_template("datasets/_table.html", **context)
    return render_template("datasets/list.html", domains=domain_choices(current_user), **context)


@bp.route("/new", methods=["GET", "POST"])
def new():
    """A new dataset: name, domain, description and its items, chosen from what the domain holds."""
    form = DatasetForm()
    form.set_domains(domain_choices(current_user))
    if request.method == "GET":
        form.domain_id.data = request.args.get("domain", "")[:12]
    return _form(form, None)


@bp.route("/<int:dataset_id>/edit", methods=["GET", "POST"])
def edit(dataset_id):
    """Change a dataset's name, domain, description or items."""
    dataset = get_dataset_or_404(current_user, dataset_id)
    form = DatasetForm(obj=None if request.method == "POST" else dataset)
    form.set_domains(domain_choices(current_user))
    if request.method == "GET":
        form.domain_id.data = str(dataset.domain_id)
    return _form(form, dataset)


def _form(form: DatasetForm, dataset: Dataset | None):
    """Render the form; on a POST save it, unless the user only asked to see another domain's
    items (the no-script way to refresh the tree)."""
    chosen = request.form.getlist("items") if request.method == "POST" else \
        [place.value for place in queries.places_of(dataset)] if dataset is not None else []
    status = 200
    if request.method == "POST" and "refresh" not in request.form:
        try:
            saved = editing.save(current_user, form.input(chosen), dataset)
        except editing.InvalidDataset as exc:
            form.place_errors(exc.errors)
            status = 422
        else:
            flash(f"Dataset “{saved.name}” {'saved' if dataset else 'created'}.", "success")
            return redirect(url_for("datasets.detail", dataset_id=saved.id))
    context = {"form": form, "dataset": dataset, **_tree(form.domain_id.data, chosen)}
    return render_template("datasets/form.html", **context), status


def _tree(domain_value, chosen) -> dict:
    """The items tree of the domain the form names (only one the user may use), with the ticked ones."""
    domain_id = parse_id(domain_value)
    allowed = {choice_id for choice_id, _ in domain_choices(current_user)}
    if domain_id not in allowed:
        domain_id = None
    places, _ = editing.parse_places(chosen)
    layout = queries.layout(domain_id, places)
    return {"layout": layout, "ticked": {place.value for place in places},
            "tree_domain": db.session.get(Domain, domain_id) if domain_id else None}


@bp.route("/items")
def items():
    """The items tree of one domain (an HTMX fragment of the dataset form, when its domain changes)."""
    context = _tree(request.args.get("domain_id", ""), request.args.getlist("items"))
    if not request.htmx:
        return redirect(url_for("datasets.new", domain=request.args.get("domain_id", "")[:12]))
    return render_template("datasets/_items.html", form=None, **context)


@bp.route("/<int:dataset_id>")
def detail(dataset_id):
    """A dataset: its items, the subjects it covers, Export now, its latest files and export jobs."""
    dataset = get_dataset_or_404(current_user, dataset_id)
    places = queries.places_of(dataset)
    return render_template("datasets/detail.html", dataset=dataset, tree=queries.tree(dataset.domain_id, places),
                           item_count=len(places), subjects=queries.subjects_covered(dataset),
                           files=queries.recent_files(current_user, dataset),
                           jobs=queries.export_jobs(current_user, dataset), export_form=ExportNowForm(),
                           confirm=ConfirmForm())


@bp.route("/<int:dataset_id>/delete", methods=["POST"])
def delete(dataset_id):
    """Delete the dataset; its exported files stay in the archive."""
    dataset = get_dataset_or_404(current_user, dataset_id)
    name = dataset.name
    editing.delete(current_user, dataset)
    flash(f"Dataset “{name}” deleted. Its exported files stay in the archive.", "success")
    return redirect(url_for("datasets.list"))


@bp.route("/<int:dataset_id>/export", methods=["POST"])
def export_now(dataset_id):
    """Queue a manual extract of the dataset in the chosen format, on the export queue, and show its run."""
    dataset = get_dataset_or_404(current_user, dataset_id)
    fmt = request.form.get("format", "")
    if fmt not in {f.value for f in ExportFormat}:
        flash("Choose one of the listed formats.", "error")
        return redirect(url_for("datasets.detail", dataset_id=dataset.id))
    try:
        job = export_dataset.extract_job(dataset.domain)
        run = dispatch.request_run(job, trigger=Trigger.HAND, user=current_user,
                                   args=export_dataset.extract_args(dataset.id, fmt))
    except (export_dataset.ExportFailed, dispatch.NotRunnable, registry.InvalidArguments) as exc:
        flash(f"Not started: {exc}", "error")
        return redirect(url_for("datasets.detail", dataset_id=dataset.id))
    return redirect(url_for("runs.detail", run_id=run.id))
