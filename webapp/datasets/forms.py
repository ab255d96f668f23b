"""The dataset form and the Export now form. Fields carry no validators: webapp.datasets.editing
checks everything in one pass and the view puts its messages next to the fields; CSRFProtect
checks the token of every POST."""
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice as Choice

from webapp.datasets.editing import DESCRIPTION_MAX, NAME_MAX, DatasetInput
from webapp.jobtypes.export_dataset import FORMAT_CHOICES


class DatasetForm(FlaskForm):
    name = StringField("Name", render_kw={"maxlength": NAME_MAX, "autocomplete": "off"})
    domain_id = SelectField("Domain", choices=[], validate_choice=False,
                            description="The study or site whose items the dataset selects.")
    description = TextAreaField("Description", render_kw={"rows": 3, "maxlength": DESCRIPTION_MAX})
    items_errors: tuple = ()  # the items tree's messages (its check boxes are not a WTForms field)

    def set_domains(self, choices):
        self.domain_id.choices = [Choice("", "Choose a domain…")] + [Choice(str(i), label) for i, label in choices]

    def input(self, items) -> DatasetInput:
        return DatasetInput(name=self.name.data or "", domain_id=self.domain_id.data or "",
                            description=self.description.data or "", items=list(items))

    def place_errors(self, errors: dict) -> None:
        for key, message in errors.items():
            if key == "items":
                self.items_errors = [message]
            else:
                getattr(self, key).errors = [*getattr(self, key).errors, message]


class ExportNowForm(FlaskForm):
    format = SelectField("Format", choices=[Choice(key, label) for key, label in FORMAT_CHOICES],
                         validate_choice=False)
