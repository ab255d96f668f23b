"""The settings page's work: store what changed, audited with before and after."""
from webapp.extensions import db
from webapp.models.audit import record
from webapp.models.settings import all_settings, set_setting

EDITABLE = ("retention_days", "support_roles", "script_time_limit", "script_memory_mb", "report_sender", "base_url",
            "envelope_max_mb", "linkage_threshold", "linkage_train", "linkage_backend")


def _comparable(value):
    return sorted(value) if isinstance(value, (list, tuple)) else value


def save(values: dict, *, actor) -> list[str]:
    """Store the settings among `values` that differ from their current value; one audit record
    names them all. Returns the keys that changed."""
    current = {key: value for key, (value, _) in all_settings().items()}
    changed = [key for key in EDITABLE if key in values and _comparable(values[key]) != _comparable(current[key])]
    if not changed:
        return []
    for key in changed:
        set_setting(key, _comparable(values[key]))
    record("edit", "setting", actor=actor, object_name="settings",
           before={key: _comparable(current[key]) for key in changed},
           after={key: _comparable(values[key]) for key in changed})
    db.session.commit()
    return changed
