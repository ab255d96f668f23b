from flask import current_app
from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db

# Settings an administrator may change at run time; the config value is the default.
DEFAULTS_FROM_CONFIG = {"retention_days": "RETENTION_DAYS"}
# Settings an administrator may change at run time whose default is a fixed value.
DEFAULTS = {
    "support_roles": ("superadmin",),  # who may use the support pages (permissions.can_use_support)
}


class Setting(db.Model):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)


def get_setting(key):
    row = db.session.get(Setting, key)
    if row is not None:
        return row.value
    if key in DEFAULTS:
        return DEFAULTS[key]
    return current_app.config[DEFAULTS_FROM_CONFIG[key]]
