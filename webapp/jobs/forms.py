from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length


class RunNowForm(FlaskForm):
    args = StringField("Arguments", validators=[Length(max=2000)],
                       description="Optional key=value pairs separated by spaces, e.g. duration=5")


class ConfirmForm(FlaskForm):
    """A form with only the CSRF token, for POST buttons."""
