"""The script job form. Its fields carry no validators: webapp/support/scripts.py checks
everything in one pass (the same rules hold without HTTP) and the view puts each message on its
field. CSRFProtect checks the token of every POST."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, FieldList, Form, FormField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.widgets import NumberInput

from webapp.jobs import editing
from webapp.models import JobState, Role
from webapp.scheduling.plans import DEFAULT_POLL_SECONDS, MAX_POLL_SECONDS, MIN_POLL_SECONDS
from webapp.support import scripts

EMPTY_ROWS = 3  # blank configuration rows a form without JavaScript offers


class ConfigRow(Form):
    key = StringField("Key", render_kw={"maxlength": scripts.KEY_MAX, "autocomplete": "off"})
    value = StringField("Value", render_kw={"maxlength": scripts.VALUE_MAX, "autocomplete": "off"})

    def blank(self) -> bool:
        return not (self.key.data or "").strip() and not (self.value.data or "")


class ScriptForm(FlaskForm):
    name = StringField("Name", render_kw={"maxlength": scripts.NAME_MAX, "autocomplete": "off"})
    description = TextAreaField("Description", render_kw={"rows": 2, "maxlength": scripts.DESCRIPTION_MAX})
    script = TextAreaField("Script", render_kw={"rows": 18, "spellcheck": "false", "autocapitalize": "off",
                                                "autocomplete": "off", "wrap": "off", "class": "code"},
                           description="Python. It gets log, warn, progress, output_file, config, run_as, db and "
                                       "audit. It is compiled when saved: a syntax error is shown here.")
    poll_seconds = StringField("Poll interval (s)", default=str(DEFAULT_POLL_SECONDS),
                               widget=NumberInput(step=1, min=MIN_POLL_SECONDS, max=MAX_POLL_SECONDS),
                               description=f"{MIN_POLL_SECONDS} to {MAX_POLL_SECONDS} seconds; "
                                           f"{DEFAULT_POLL_SECONDS} when left empty.")
    config = FieldList(FormField(ConfigRow), min_entries=0, max_entries=scripts.ROWS_MAX + EMPTY_ROWS + 1)
    run_as_id = SelectField("Run as", choices=[], validate_choice=False,
                            description="Optional: the user named on the audit records of what the script changes.")
    archived = BooleanField("Archived (no poller runs it; it stays listed)")
    time_limit = StringField("Time limit (s)", widget=NumberInput(step=1, min=1))
    version = HiddenField()  # Job.version when the form was opened: a save from a stale form is refused
    run_as_groups: list = []  # (label, [(id, name)]): the template renders them as optgroups
    config_errors: list = []  # problems of the configuration as a whole (too many rows)

    def setup(self, users, most_seconds: int, job=None) -> None:
        """Choices of run-as users (system accounts first, in an optgroup), the time limit's bound,
        and a few empty configuration rows (the no-JavaScript way to add some)."""
        system = [(str(user.id), user.username) for user in users if user.role == Role.SYSTEM]
        people = [(str(user.id), user.username) for user in users if user.role != Role.SYSTEM]
        if job is not None and job.run_as is not None and not job.run_as.active:
            people.append((str(job.run_as.id), f"{job.run_as.username} (inactive: choose another)"))
        self.run_as_groups = [("System accounts", system), ("People", people)]
        self.time_limit.render_kw = {"max": most_seconds}
        self.time_limit.description = f"Optional, at most {most_seconds} s (the setting); empty: the setting."

    def fill(self, job, script_text: str) -> None:
        """The job's current settings, for a form that opens."""
        self.name.data, self.description.data = job.name, job.description
        self.script.data = script_text
        self.poll_seconds.data = str((job.plan or {}).get("seconds", DEFAULT_POLL_SECONDS))
        params = job.params or {}
        for key, value in (params.get("config") or {}).items():
            self.config.append_entry({"key": key, "value": value})
        self.run_as_id.data = str(job.run_as_id) if job.run_as_id else ""
        self.archived.data = job.state == JobState.ARCHIVED
        self.time_limit.data = "" if params.get("time_limit") is None else str(params["time_limit"])
        self.version.data = str(job.version)

    def pad_rows(self, extra: int = EMPTY_ROWS) -> None:
        """Leave `extra` blank rows at the end (the rows a user without JavaScript fills in)."""
        blanks = 0
        for entry in reversed(self.config.entries):
            if not entry.form.blank():
                break
            blanks += 1
        while blanks < extra and len(self.config.entries) < self.config.max_entries:
            self.config.append_entry()
            blanks += 1

    def script_input(self) -> scripts.ScriptInput:
        # Browsers send a textarea's line breaks as CRLF: the script is kept with LF, so the same
        # text has the same MD5 however it was sent.
        text = (self.script.data or "").replace("\r\n", "\n").replace("\r", "\n")
        version = editing.parse_id(self.version.data or "")  # canonical digits only ("²" is not 2)
        return scripts.ScriptInput(
            name=self.name.data or "", description=self.description.data or "", script=text,
            poll_seconds=self.poll_seconds.data, config=[(entry.form.key.data or "", entry.form.value.data or "")
                                                         for entry in self.config.entries],
            run_as_id=self.run_as_id.data or None, archived=bool(self.archived.data),
            time_limit=self.time_limit.data, version=version if version is not None else -1)

    def show_errors(self, errors: dict) -> None:
        """Put each message of scripts.InvalidJob on its field; a row's on its key or value (row i
        of the input is row i of the form, blank rows included)."""
        rows = self.config.entries
        for key, message in errors.items():
            parts = key.split("-")
            if len(parts) == 3 and parts[0] == "config" and parts[1].isdigit() and int(parts[1]) < len(rows):
                rows[int(parts[1])].form[parts[2]].errors = [message]
            elif key in self._fields and key != "config":
                self[key].errors = [message]
            elif key == "config":
                self.config_errors = [message]
            else:
                self.form_errors.append(message)


class RunNowForm(FlaskForm):
    """Run now: the CSRF token only (a script takes its configuration, not run arguments)."""
