from flask import current_app
from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db

# Settings an administrator may change at run time (admin settings page); until then the config
# value (from the environment, config.py) is the default.
DEFAULTS_FROM_CONFIG = {
    "retention_days": "RETENTION_DAYS",  # FIRETIME_RETENTION_DAYS
    "report_sender": "MAIL_DEFAULT_SENDER",  # MAIL_DEFAULT_SENDER
    "base_url": "BASE_URL",  # FIRETIME_BASE_URL
    "script_time_limit": "SCRIPT_TIME_LIMIT",  # FIRETIME_SCRIPT_TIME_LIMIT, seconds
    "script_memory_mb": "SCRIPT_MEMORY_MB",  # FIRETIME_SCRIPT_MEMORY_MB, MiB
    "envelope_max_mb": "ENVELOPE_MAX_MB",  # FIRETIME_ENVELOPE_MAX_MB
    "linkage_threshold": "LINKAGE_THRESHOLD",  # FIRETIME_LINKAGE_THRESHOLD
    "linkage_train": "LINKAGE_TRAIN",  # FIRETIME_LINKAGE_TRAIN
    "linkage_backend": "LINKAGE_BACKEND",  # FIRETIME_LINKAGE_BACKEND
}
# Settings an administrator may change at run time whose default is a fixed value.
DEFAULTS = {
    "support_roles": ("superadmin",),  # who may use the support pages (permissions.can_use_support)
}


class Setting(db.Model):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)


def default_setting(key):
    """The value a setting has until an administrator stores one."""
    if key in DEFAULTS:
        return DEFAULTS[key]
    return current_app.config[DEFAULTS_FROM_CONFIG[key]]


def get_setting(key):
    row = db.session.get(Setting, key)
    return row.value if row is not None else default_setting(key)


def all_settings() -> dict:
    """Every setting: key -> (value, stored), where stored says an administrator set it."""
    stored = dict(db.session.execute(select(Setting.key, Setting.value)).all())
    keys = [*DEFAULTS_FROM_CONFIG, *DEFAULTS]
    return {key: (stored[key], True) if key in stored else (default_setting(key), False) for key in keys}


def set_setting(key, value) -> None:
    """Store a value (the caller audits it and commits)."""
    if key not in DEFAULTS and key not in DEFAULTS_FROM_CONFIG:
        raise KeyError(key)
    row = db.session.get(Setting, key)
    if row is None:
        db.session.add(Setting(key=key, value=value))
    else:
        row.value = value
