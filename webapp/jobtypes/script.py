"""Support scripts (SPEC 8, S2): a script job runs the Python kept in `script_versions` on its poll
interval, in a child process of its own with a time and a memory limit (`webapp/support/sandbox.py`).
Only the roles the `support_roles` setting names see these jobs and their runs, anywhere."""
from marshmallow import Schema, ValidationError, fields, validate, validates

from webapp.jobtypes.registry import JobType, register
from webapp.support.sandbox import run_script  # loaded once by the worker, not in each work horse

KEY = "support.script"
QUEUE = "scripts"
CONFIG_KEY_MAX, CONFIG_VALUE_MAX, CONFIG_ROWS_MAX = 100, 2000, 100
TIME_LIMIT_MAX = 86_400  # the most the time-limit setting allows (admin/forms.SCRIPT_TIME_LIMIT_MAX)


class ScriptParams(Schema):
    # The script's configuration (S2 "job configurations"): key -> value, both text.
    config = fields.Dict(keys=fields.String(validate=validate.Length(1, CONFIG_KEY_MAX)),
                         values=fields.String(validate=validate.Length(0, CONFIG_VALUE_MAX)),
                         load_default=dict, metadata={"label": "Configuration"})
    # Seconds; None: the time-limit setting. Never more than the setting when the run starts.
    time_limit = fields.Integer(load_default=None, allow_none=True, strict=False,
                                validate=validate.Range(1, TIME_LIMIT_MAX), metadata={"label": "Time limit (s)"})

    @validates("config")
    def _bounded(self, value, **kwargs):
        if len(value) > CONFIG_ROWS_MAX:
            raise ValidationError(f"At most {CONFIG_ROWS_MAX} configuration parameters.")


def _sees_support(user) -> bool:
    from webapp.auth.permissions import can_use_support  # permissions imports the registry

    return can_use_support(user)


def run(ctx, config, time_limit):
    run_script(ctx, config=config, time_limit=time_limit)


register(JobType(
    key=KEY,
    label="Support script",
    run=run,
    params=ScriptParams,
    user_creatable=False,
    queue=QUEUE,
    timeout=TIME_LIMIT_MAX + 600,  # the script's own limit stops it first; RQ's is a backstop
    visible_to=_sees_support,
    description="Python written by support engineers, run on a poll interval in a child process "
                "with a time and a memory limit.",
))
