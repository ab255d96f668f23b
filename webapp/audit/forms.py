"""The audit page's filters: read from the query string, so a link or the back button restores them."""
from datetime import date

from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, StringField
from wtforms.validators import Length, NumberRange, Optional, ValidationError

# Dates a person means; anything outside is a typing slip, answered next to the field.
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)

# Suggestions for the action and object type boxes (any other value may be typed).
KNOWN_ACTIONS = ("create", "edit", "remove", "restore", "delete", "run_now", "skip", "cancel", "retry",
                 "login", "login_failed", "password", "deactivate", "reactivate", "token_create", "token_revoke",
                 "move", "rename", "upload", "rollback", "rolled back", "pause", "resume", "clear")
KNOWN_OBJECT_TYPES = ("job", "run", "user", "domain", "setting", "api_token", "queue", "dataset", "item_value",
                      "envelope")


class DayField(DateField):
    """A day as a browser's date box sends it (YYYY-MM-DD). Only a link typed by hand can bring
    anything else, and the page shows a date box: the message says to pick a day there."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError("Not a day of the calendar: pick one in the date box.") from None


def _in_range(form, field):
    if field.data is not None and not EARLIEST <= field.data <= LATEST:
        raise ValidationError(f"Give a date between {EARLIEST} and {LATEST}.")


class AuditFilterForm(FlaskForm):
    """GET form: no CSRF token (it changes nothing)."""

    class Meta:
        csrf = False

    who = StringField("Who", validators=[Optional(), Length(max=80)])
    action = StringField("Action", validators=[Optional(), Length(max=40)])
    object_type = StringField("Object type", validators=[Optional(), Length(max=40)])
    object_id = IntegerField("Object id", validators=[Optional(), NumberRange(min=1, max=2**31 - 1)])
    date_from = DayField("From", validators=[Optional(), _in_range], format="%Y-%m-%d")
    date_to = DayField("To", validators=[Optional(), _in_range], format="%Y-%m-%d")

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("“To” is before “From”.")

    def valid_values(self) -> dict:
        """The filters that passed their checks (a field in error filters nothing), by name."""
        self.validate()
        return {name: field.data for name, field in self._fields.items()
                if not field.errors and field.data not in (None, "")}
