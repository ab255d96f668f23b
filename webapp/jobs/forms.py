from flask import request
from flask_wtf import FlaskForm
from marshmallow import fields as mfields
from marshmallow import missing, validate
from wtforms import (BooleanField, Form, FormField, HiddenField, RadioField, SelectField, SelectMultipleField,
                     StringField, TextAreaField)
from wtforms.fields.choices import SelectChoice as Choice
from wtforms.validators import Length
from wtforms.widgets import CheckboxInput, DateTimeLocalInput, ListWidget, NumberInput

from webapp.auth.permissions import sees_installation_jobs
from webapp.extensions import db
from webapp.jobs import editing, typepages
from webapp.jobs.editing import PARAM_PREFIX, PLAN_PREFIX, JobInput
from webapp.jobtypes import registry
from webapp.models import Dataset, Domain, Scope
from webapp.scheduling.plans import DAY_NAMES, MAX_EVERY, MAX_POLL_SECONDS, MIN_POLL_SECONDS, TEXT_LIMITS, PlanError


class RunNowForm(FlaskForm):
    args = StringField("Arguments", validators=[Length(max=2000)],
                       description="Optional key=value pairs separated by spaces, e.g. duration=5")


# --- the job form ---------------------------------------------------------------------------
# The fields carry no validators: webapp.jobs.editing checks everything (so that every problem
# is found in one pass, and the same rules hold without HTTP) and the view puts its messages
# on the fields. CSRFProtect checks the token of every POST.

KIND_LABELS = {
    "automatic": "Automatic (declared by the job type)",
    "interval": "Interval: every N minutes or hours",
    "period": "Period: from a start, daily, weekly or monthly",
    "daily": "Days of the week at set times",
    "cron": "Cron expression",
    "poll": "Poll: every 1 to 300 seconds",
    "disabled": "Disabled: only by hand or through the API",
}


# The fields each kind of plan has (parse_plan reads the same names).
PLAN_FIELDS = {"automatic": (), "interval": ("every", "unit"), "period": ("start", "repeat"),
               "daily": ("days", "times"), "cron": ("expression",), "poll": ("seconds",), "disabled": ()}


class PlanForm(Form):
    """The plan fields; only those of the chosen kind are shown and read."""

    kind = SelectField("Schedule", choices=[], validate_choice=False)
    # The kind whose fields the browser shows: after a switch of kind the posted values belong
    # to the old kind, and the new kind's fields start from the job's plan or their defaults.
    shown_kind = HiddenField()
    every = StringField("Every", widget=NumberInput(step=1, min=1, max=MAX_EVERY))
    unit = SelectField("Unit", choices=[Choice("minutes"), Choice("hours")], default="hours",
                       validate_choice=False)
    start = StringField("Start (date and time)", widget=DateTimeLocalInput(),
                        description="The first run; later runs keep its time of day.")
    # A default, so that a switch to this kind reads the choice the browser shows (Daily), not None.
    repeat = SelectField("Repeat", choices=[Choice("daily", "Daily"), Choice("weekly", "Weekly"), Choice("monthly", "Monthly")],
                         default="daily", validate_choice=False)
    days = SelectMultipleField("Days", choices=[Choice(str(i), name) for i, name in enumerate(DAY_NAMES)],
                               default=[str(i) for i in range(7)], validate_choice=False, widget=ListWidget(prefix_label=False),
                               option_widget=CheckboxInput())
    times = StringField("Times of day", description="HH:MM, several separated by commas, e.g. 06:00, 18:30",
                        render_kw={"maxlength": TEXT_LIMITS["times"]})
    expression = StringField("Cron expression",
                             description="Five fields: minute hour day-of-month month day-of-week, "
                                         "e.g. 30 2 * * 1-5",
                             render_kw={"maxlength": TEXT_LIMITS["expression"]})
    seconds = StringField("Every (seconds)", widget=NumberInput(step=1, min=MIN_POLL_SECONDS, max=MAX_POLL_SECONDS),
                          description=f"{MIN_POLL_SECONDS} to {MAX_POLL_SECONDS}; 60 when left empty.")

    def shown(self):
        """The fields of the chosen kind, in order."""
        return [self[name] for name in PLAN_FIELDS.get(self.kind.data, ())]

    def start_switched_fields(self, initial: dict) -> None:
        """After a switch of kind, fill the new kind's fields from `initial` or their defaults."""
        if not self.shown_kind.data or self.shown_kind.data == self.kind.data:
            return
        for field in self.shown():
            name = field.name.removeprefix(PLAN_PREFIX)
            field.data = initial.get(name, field.default) if initial.get("kind") == self.kind.data \
                else field.default
        self.shown_kind.data = self.kind.data

    def raw(self) -> dict:
        """The plan dict as typed, for webapp.jobs.editing."""
        plan = {"kind": self.kind.data}
        for field in self.shown():
            plan[field.name.removeprefix(PLAN_PREFIX)] = field.data
        return plan


def plan_data(plan: dict | None) -> dict:
    """A stored plan as the plan fields' initial data."""
    data = dict(plan or {"kind": "disabled"})
    data["shown_kind"] = data.get("kind")
    if "days" in data:
        data["days"] = [str(day) for day in data["days"]]
    if isinstance(data.get("times"), list):
        data["times"] = ", ".join(data["times"])
    return data


class JobForm(FlaskForm):
    name = StringField("Name", render_kw={"maxlength": editing.NAME_MAX, "autocomplete": "off"})
    description = TextAreaField("Description", render_kw={"rows": 2, "maxlength": editing.DESCRIPTION_MAX})
    job_type = SelectField("Job type", choices=[], validate_choice=False)
    scope = RadioField("Execution", choices=[Choice(Scope.DOMAIN.value, "By domain"),
                                             Choice(Scope.INSTALLATION.value, "By installation")],
                       default=Scope.DOMAIN.value, validate_choice=False)
    domain_id = SelectField("Execution domain", choices=[], validate_choice=False)
    plan = FormField(PlanForm, separator="-")
    report_enabled = BooleanField("Send a report when a run ends")
    report_recipients = StringField("Recipients", description="Email addresses, separated by commas.",
                                    render_kw={"placeholder": "data-manager@example.org, pi@example.org",
                                               "maxlength": editing.RECIPIENTS_MAX})
    # The job type the posted parameters belong to: after a switch of type they are not read.
    params_for = HiddenField()
    # The job's version when the form was opened: a save from a stale form is refused.
    version = HiddenField()
    type_fixed = False  # a system job's type is its code's, whatever is posted
    only_domain = None  # (id, label) when the user may put a job in one domain and not the installation

    def set_choices(self, job_types, kinds, domains, installation: bool):
        self.job_type.choices = [Choice(jt.key, jt.label) for jt in job_types]
        self.plan.kind.choices = [Choice(kind, KIND_LABELS[kind]) for kind in kinds]
        self.domain_id.choices = [Choice("", "Choose a domain…")] + [Choice(str(i), label) for i, label in domains]
        if not installation:
            self.scope.choices = [c for c in self.scope.choices if c.value != Scope.INSTALLATION]
            if len(domains) == 1:
                # Nothing to choose: the form says where the job runs instead of asking.
                self.only_domain = domains[0]
                self.scope.data = Scope.DOMAIN.value
                self.domain_id.data = str(domains[0][0])

    def _unseen(self, job_type) -> dict:
        """The fields the browser had not shown when the form was saved (a type or schedule kind
        changed without JavaScript), with messages keyed like InvalidJob.errors."""
        problems = {}
        offered = {choice.value for choice in self.job_type.choices}
        if job_type is not None and job_type.key in offered and not self.type_fixed and \
                self.params_for.raw_data and self.params_for.raw_data[0] not in ("", job_type.key):
            problems["job_type"] = f"Check the parameters of {job_type.label} below, then save."
        plan = self.plan.form
        if plan.shown_kind.raw_data and plan.shown_kind.raw_data[0] not in ("", plan.kind.data):
            problems[f"{PLAN_PREFIX}kind"] = "Check the fields of this schedule below, then save."
        return problems

    def job_input(self, params_form, job_type) -> JobInput:
        """What was typed; raises InvalidJob if the user has not seen some of the fields to save."""
        unseen = self._unseen(job_type)
        if unseen:
            raise editing.InvalidJob(unseen)
        return JobInput(
            name=self.name.data or "", description=self.description.data or "", job_type=self.job_type.data or "",
            scope=self.scope.data or "", domain_id=self.domain_id.data or None,
            params=params_form.raw() if params_form is not None else {}, plan=self.plan.raw(),
            report_enabled=bool(self.report_enabled.data), report_recipients=self.report_recipients.data or "",
            version=self._opened_at())

    def plan_input(self) -> tuple[dict, int | None]:
        """(the plan as typed, the version the form was opened at) for a save of the schedule
        alone; raises InvalidJob if the user has not seen the fields of the kind to save."""
        unseen = {key: message for key, message in self._unseen(None).items() if key.startswith(PLAN_PREFIX)}
        if unseen:
            raise editing.InvalidJob(unseen)
        return self.plan.raw(), self._opened_at()

    def _opened_at(self) -> int | None:
        """The version the form was opened at (None for a new job); 0 if it is missing or garbled,
        which no job has: such a save is refused like one from a stale form."""
        if not self.version.object_data:
            return None
        posted = self.version.raw_data
        return (editing.parse_id(posted[0]) if posted else None) or 0

    def show_errors(self, errors: dict, params_form) -> None:
        """Put each message of InvalidJob.errors on its field; the rest on the form."""
        unplaced = []
        for key, message in errors.items():
            field = self._field_for(key, params_form)
            if field is None:
                unplaced.append(message)
            else:
                field.errors = [*field.errors, message]
        self.form_errors = [*self.form_errors, *unplaced]

    def _field_for(self, key, params_form):
        if key.startswith(PLAN_PREFIX):
            name = key.removeprefix(PLAN_PREFIX)
            return self.plan[name] if name in self.plan.form._fields else self.plan.kind
        if key.startswith(PARAM_PREFIX) and params_form is not None:
            return params_form._fields.get(key.removeprefix(PARAM_PREFIX))
        return self._fields.get(key)


# --- parameters, built from the job type's marshmallow schema -------------------------------

class ParamsForm(Form):
    def raw(self) -> dict:
        """Parameter values as typed; blank ones are left out so that their defaults apply."""
        values = {}
        for name, field in self._fields.items():
            if isinstance(field, BooleanField):
                values[name] = bool(field.data)
            elif field.data is not None and str(field.data).strip():
                # Not posted (a field missing from the request): the value the form started from.
                values[name] = str(field.data).strip()
        return values


def params_form(job_type, formdata=None, data=None, user=None) -> ParamsForm:
    """A form with one field per parameter: Float/Integer -> number, Boolean -> check box, a
    field with choices -> a list to choose from, anything else -> text; the label from the
    field's metadata "label", the hint from its "description" (or "help")."""
    schema = job_type.params()
    attrs = {name: _param_field(name, spec, user) for name, spec in schema.fields.items()}
    form_class = type("ParamsForm", (ParamsForm,), attrs)
    values = {name: _default_of(spec) for name, spec in schema.fields.items()}
    values.update({k: _shown(v) for k, v in (data or {}).items() if k in values})
    return form_class(formdata, data=values, prefix=PARAM_PREFIX)


def _param_field(name, spec, user=None):
    label = spec.metadata.get("label") or name.replace("_", " ").capitalize()
    description = spec.metadata.get("description") or spec.metadata.get("help", "")
    if isinstance(spec, mfields.Boolean):
        return BooleanField(label, description=description)
    choices = _choices_of(spec, user)
    if choices is not None:
        return SelectField(label, description=description, validate_choice=False,
                           choices=[Choice("", "Choose…")] + [Choice(str(value), text) for value, text in choices])
    if isinstance(spec, mfields.Number):
        bounds = {}
        for validator in spec.validators:
            if isinstance(validator, validate.Range):
                bounds.update({k: v for k, v in (("min", validator.min), ("max", validator.max)) if v is not None})
        step = 1 if isinstance(spec, mfields.Integer) else "any"
        return StringField(label, description=description, widget=NumberInput(step=step, **bounds))
    return StringField(label, description=description)


def _choices_of(spec, user) -> list[tuple] | None:
    """(value, label) pairs a parameter takes: its metadata "choices" (a list, or a function of
    the user, such as the datasets they may see), else its OneOf validator; None for free text.
    The schema checks the value either way: a list offers, it does not decide."""
    declared = spec.metadata.get("choices")
    if isinstance(declared, str):  # a list the console knows how to make for the user, by name
        declared = NAMED_CHOICES[declared]
    if callable(declared):
        return [tuple(choice) for choice in declared(user)]
    if declared is not None:
        return [tuple(choice) if isinstance(choice, (list, tuple)) else (choice, choice) for choice in declared]
    for validator in spec.validators:
        if isinstance(validator, validate.OneOf):
            return list(validator.options())
    return None


def dataset_choices(user) -> list[tuple[int, str]]:
    """(id, "Vitals · Study A") of every dataset the user may see, by name then domain."""
    from webapp.auth.permissions import datasets_query  # the datasets' visibility rule, with the datasets

    rows = db.session.execute(datasets_query(user).with_only_columns(Dataset.id, Dataset.name, Domain.name)
                              .join(Domain, Domain.id == Dataset.domain_id)).all()
    return [(row[0], f"{row[1]} · {row[2]}") for row in sorted(rows, key=lambda r: (r[1].lower(), r[2].lower()))]


# Choices a parameter names in its metadata ("choices": "datasets").
NAMED_CHOICES = {"datasets": dataset_choices}


def _default_of(spec):
    default = spec.load_default
    if default is missing:
        return None
    return _shown(default() if callable(default) else default)


def _shown(value):
    """10.0 -> 10, so that a number reads as typed."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- building the form for a request ----------------------------------------------------------

def job_form(user, job=None, saving=False, posted=True):
    """(form, parameters form or None, job type or None) for a new job or an edit of `job`:
    posted values (unless `posted` is false) over the job's settings or the defaults, with the
    choices `user` may make. Unless the form is being saved, a schedule kind the chosen type
    does not offer (after a switch of type) falls back to "disabled"; saving such a kind is
    refused instead."""
    types = editing.creatable_types(user, job)
    # A new job starts as the type asked for (?type=, from a New import job button), else the first.
    wanted = next((jt for jt in types if jt.key == request.args.get("type")), types[0] if types else None) \
        if job is None else None
    initial = _settings_of(job, wanted)
    posted = posted and request.method == "POST"
    form = JobForm(data=initial) if posted else JobForm(formdata=None, data=initial)
    if job is not None and job.system:
        form.job_type.data = job.job_type
        form.type_fixed = True
    elif not form.job_type.data:
        form.job_type.data = types[0].key if types else ""
    job_type = editing.job_type_or_none(form.job_type.data)
    kinds = editing.plan_kinds(job_type)
    form.set_choices(types, kinds, editing.domain_choices(user), sees_installation_jobs(user))
    if job is None:
        # A kind switched to starts from the default plan of the type shown, not of the one asked for.
        initial["plan"] = plan_data(typepages.default_plan(job_type))
        if posted:
            _follow_default_plan(form, job_type)
    if not form.plan.kind.data or (form.plan.kind.data not in kinds and not saving):
        form.plan.kind.data = "disabled"
    form.plan.start_switched_fields(initial["plan"])
    params = None
    if job_type is not None:
        own = posted and form.params_for.data in (None, "", job_type.key)
        stored = job.params if job is not None and job.job_type == job_type.key else None
        params = params_form(job_type, request.form if own else None, stored, user=user)
        form.params_for.data = job_type.key
    return form, params, job_type


def _follow_default_plan(form, job_type) -> None:
    """A new job's type was switched: if its plan is still the one the former type started
    with, the new type's default plan takes its place (a plan the user changed stays)."""
    former = editing.job_type_or_none(form.params_for.data) if form.params_for.data else None
    if job_type is None or former is None or former.key == job_type.key:
        return
    started = plan_data(typepages.default_plan(former))
    plan = form.plan.form
    untouched = plan.kind.data == started["kind"] and all(
        str(plan[name].data) == str(value) for name, value in started.items()
        if name in plan._fields and name not in ("kind", "shown_kind", "start"))
    if not untouched:
        return
    for name, value in plan_data(typepages.default_plan(job_type)).items():
        if name in plan._fields:
            plan[name].data = value


def _settings_of(job, wanted_type: registry.JobType | None = None) -> dict:
    """The form's initial data: the job's settings, or a new job's defaults (with `wanted_type`,
    the type a New import job button asks for, chosen and its default plan preselected)."""
    if job is None:
        return {"scope": Scope.DOMAIN.value, "job_type": wanted_type.key if wanted_type else None,
                "plan": plan_data(typepages.default_plan(wanted_type))}
    return {"name": job.name, "description": job.description, "job_type": job.job_type, "scope": job.scope,
            "domain_id": str(job.domain_id or ""), "plan": plan_data(job.plan),
            "report_enabled": job.report_enabled, "report_recipients": job.report_recipients,
            "version": str(job.version)}


def plan_preview_of(form, job_type, job=None) -> dict:
    """What the plan as typed would do: {"description", "times"}, or "errors" as (label, message)
    for what was typed wrong, and "missing": the labels of required fields still empty (not an
    error until the form is saved: nobody has typed anything wrong yet)."""
    try:
        result = editing.preview(form.plan.raw(), job_type, previous=job.plan if job else None)
    except PlanError as exc:
        fields = form.plan.form._fields
        errors, missing = [], []
        for key, message in exc.errors.items():
            label = fields[key].label.text if key in fields else "Schedule"
            if key in fields and _is_empty(fields[key].data):
                missing.append(label)
            else:
                errors.append((label, message))
        return {"description": "", "times": [], "errors": errors, "missing": missing}
    return {"description": result.description, "times": result.times, "errors": [], "missing": []}


def _is_empty(value) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())
