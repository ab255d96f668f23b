"""Forms of the admin pages; each message sits next to its field."""
import math
import re
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import BooleanField, FloatField, IntegerField, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice as Choice
from wtforms.validators import (DataRequired, EqualTo, InputRequired, Length, NumberRange, Optional, StopValidation,
                                ValidationError)
from wtforms.widgets import CheckboxInput, ListWidget

from webapp.admin.domains import KINDS as DOMAIN_KINDS
from webapp.extensions import db
from webapp.guards import MAX_ID
from webapp.mail_addresses import valid_recipients
from webapp.models import Role, User
from webapp.models.accounts import ROLE_LABELS

MIN_PASSWORD = 8
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
ROLE_CHOICES = [Choice(role.value, ROLE_LABELS[role]) for role in Role]
SIGN_IN_ROLE_CHOICES = [choice for choice in ROLE_CHOICES if choice.value != Role.SYSTEM]


class CheckboxesField(SelectMultipleField):
    """Several choices as a list of check boxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _id(value) -> int:
    """An id as a form sends it; a number no row can have is refused like a word (ValueError)."""
    number = int(value)
    if not 1 <= number <= MAX_ID:
        raise ValueError(value)
    return number


def _optional_id(value):
    return _id(value) if value not in (None, "", "None") else None


def one_address(form, field):
    """A single valid email address (webapp/mail_addresses.py decides what is one)."""
    text = (field.data or "").strip()
    if not text:
        return
    try:
        addresses = valid_recipients(text)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if len(addresses) != 1:
        raise ValidationError("Give one email address.")
    field.data = addresses[0]


class _Profile(FlaskForm):
    email = StringField("Email", validators=[Optional(), Length(max=254), one_address],
                        description="Optional; shown to other administrators.")
    role = SelectField("Role", choices=ROLE_CHOICES, validators=[DataRequired()])
    domain_id = SelectField("Domain", coerce=_optional_id, validate_choice=True,
                            description="A domain administrator manages the jobs of this domain and those below it.")
    supervised = CheckboxesField("Supervised domains", coerce=_id,
                                 description="A system administrator sees the jobs of these domains and those below them.")

    def set_domains(self, nodes):
        """Choices from admin.domains.flat(tree()): indented by depth."""
        labels = [Choice(str(node.domain.id), "\u00a0\u00a0" * node.depth + node.domain.name) for node in nodes]
        self.domain_id.choices = [Choice("", "— none —")] + labels
        self.supervised.choices = labels
        return self

    def validate_domain_id(self, field):
        if self.role.data == Role.DOMAIN_ADMIN and field.data is None:
            raise ValidationError("A domain administrator needs a domain.")


def _password_unless_system(form, field):
    """On the new-user form: a password for everyone but a system account (it uses API tokens)."""
    if not field.data:
        field.errors[:] = []
        if form.role.data == Role.SYSTEM:
            raise StopValidation()
        raise StopValidation("Give a password (a system account needs none: it uses API tokens).")


def _password_fields(required: bool):
    first = [DataRequired() if required else _password_unless_system, Length(min=MIN_PASSWORD, max=200,
             message=f"Use {MIN_PASSWORD} to 200 characters.")]
    return (PasswordField("Password", validators=first, description=f"At least {MIN_PASSWORD} characters."),
            PasswordField("Repeat the password", validators=[EqualTo("password", message="The two passwords differ.")]))


class UserCreateForm(_Profile):
    # A new user starts as the least privileged role that signs in; more is a deliberate choice.
    role = SelectField("Role", choices=ROLE_CHOICES, validators=[DataRequired()], default=Role.DOMAIN_ADMIN.value)
    username = StringField("User name", validators=[DataRequired(), Length(max=80)],
                           description="Letters, digits and . _ @ - ; it cannot be changed later.")
    password, confirm = _password_fields(required=False)

    def validate_username(self, field):
        name = field.data.strip()
        if not USERNAME.match(name):
            raise ValidationError("Use letters, digits and . _ @ - only, starting with a letter or digit.")
        if db.session.scalar(select(User.id).where(func.lower(User.username) == name.lower())) is not None:
            raise ValidationError(f"There is already a user named “{name}”.")
        field.data = name


class UserEditForm(_Profile):
    pass


class PasswordForm(FlaskForm):
    password, confirm = _password_fields(required=True)


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(message="Name the token after what will use it."),
                                                 Length(max=80)],
                       description="What will use it, for example “nightly export script”.")


class DomainForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Give the domain a name."), Length(max=120)])
    # Checked by domains._check_oid (unique, no spaces), so that the page and the code say the same.
    oid = StringField("OID (StudyOID)", validators=[Length(max=100, message="An OID has at most 100 characters.")],
                      description="The StudyOID its ODM files carry, such as STUDY-A: an import job takes a file "
                                  "only into the domain it names. Optional.")
    # Any domain id is taken here: domains.update says why a domain cannot be the parent.
    parent_id = SelectField("Under", coerce=_optional_id, validate_choice=False,
                            description="The domain it belongs to; none for a top-level domain.")
    kind = SelectField("Kind", choices=[Choice(key, label) for key, label in DOMAIN_KINDS.items()], default="clinical",
                       description="A linkage project receives envelopes of person records (the Envelopes page); "
                                   "a clinical domain holds the data of a study or a site.")

    def set_parents(self, nodes):
        self.parent_id.choices = [Choice("", "— top level —")] + [
            Choice(str(node.domain.id), "\u00a0\u00a0" * node.depth + node.domain.name) for node in nodes]
        return self


def web_address(form, field):
    """An absolute http or https address of the console, without query or fragment."""
    text = (field.data or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Give an address starting with http:// or https://, for example https://jobs.example.org.")
    if parts.query or parts.fragment or " " in text:
        raise ValidationError("The address cannot have spaces, a query (?…) or a fragment (#…).")
    try:
        parts.port
    except ValueError:
        raise ValidationError("The port is not a number between 0 and 65535.") from None
    field.data = text


# Bounds of the support scripts' limits (the settings page and a script job's own time limit).
SCRIPT_TIME_LIMIT_MAX = 86_400
SCRIPT_MEMORY_MIN_MB, SCRIPT_MEMORY_MAX_MB = 128, 65_536
ENVELOPE_MAX_MB = 10_240
THRESHOLD_MIN, THRESHOLD_MAX = 0.5, 0.999


class SettingsForm(FlaskForm):
    retention_days = IntegerField("Keep run history for (days)", validators=[
        InputRequired(message="Give a number of days."),
        NumberRange(min=1, max=36_500, message="Give a number of days from 1 to 36500.")],
        description="Finished runs, their logs and files older than this are purged (exported files of the archive stay).")
    support_roles = CheckboxesField("Roles allowed on the support page", choices=SIGN_IN_ROLE_CHOICES,
                                    description="The support page runs scripts: keep it to the people who must.")
    script_time_limit = IntegerField("Time limit of a support script (seconds)", validators=[
        InputRequired(message="Give a number of seconds."),
        NumberRange(min=1, max=SCRIPT_TIME_LIMIT_MAX,
                    message=f"Give a number of seconds from 1 to {SCRIPT_TIME_LIMIT_MAX}.")],
        description="A script still running after this is killed; a script job may ask for less.")
    script_memory_mb = IntegerField("Memory limit of a support script (MB)", validators=[
        InputRequired(message="Give a number of megabytes."),
        NumberRange(min=SCRIPT_MEMORY_MIN_MB, max=SCRIPT_MEMORY_MAX_MB,
                    message=f"Give a number of megabytes from {SCRIPT_MEMORY_MIN_MB} to {SCRIPT_MEMORY_MAX_MB}.")],
        description="A script (with the processes it starts) that uses more is killed.")
    report_sender = StringField("Sender of run reports", validators=[
        DataRequired(message="Give the address run reports are sent from."), Length(max=254)])
    base_url = StringField("Address of the console", validators=[
        DataRequired(message="Give the address people reach the console at."), Length(max=300), web_address],
        description="Links in emails start with it.")

    # Linkage projects (SPEC 9): the envelope upload limit and the match step's model.
    envelope_max_mb = IntegerField("Largest envelope upload (MB)", validators=[
        InputRequired(message="Give a number of megabytes."),
        NumberRange(min=1, max=ENVELOPE_MAX_MB, message=f"Give a number of megabytes from 1 to {ENVELOPE_MAX_MB}.")],
        description="A larger upload is refused while it streams, and listed as a corrupt envelope.")
    linkage_threshold = FloatField("Match threshold (probability)", validators=[
        InputRequired(message="Give a probability, such as 0.9."),
        NumberRange(min=THRESHOLD_MIN, max=THRESHOLD_MAX,
                    message=f"Give a probability from {THRESHOLD_MIN} to {THRESHOLD_MAX}.")],
        description="Two records whose match probability reaches it are the same person.")
    linkage_train = BooleanField("Train the model (EM)",
                                 description="Estimate the model's parameters from each project's records "
                                             "(expectation–maximisation); otherwise fixed parameters are used.")
    linkage_backend = SelectField("Matching engine", choices=[Choice("duckdb", "DuckDB (on this machine)"),
                                                              Choice("spark", "Spark (a cluster)")],
                                  description="Where Splink runs the model; Spark for projects one machine cannot hold.")

    def __init__(self, *args, current_sender=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_sender = current_sender

    def validate_linkage_threshold(self, field):
        if field.data is not None and not math.isfinite(field.data):
            raise ValidationError(f"Give a probability from {THRESHOLD_MIN} to {THRESHOLD_MAX}.")

    def validate_report_sender(self, field):
        """A new address is checked; the one in use (an environment default such as
        firetime@localhost, which is no public address) may stay as it is."""
        if field.data.strip() != self.current_sender:
            one_address(self, field)

    def validate_support_roles(self, field):
        if Role.SUPERADMIN.value not in (field.data or []):
            raise ValidationError("Superadmins always keep the support page: tick Superadmin.")
