"""Forms more than one area uses."""
from flask_wtf import FlaskForm


class ConfirmForm(FlaskForm):
    """A form with only the CSRF token, for POST buttons."""
