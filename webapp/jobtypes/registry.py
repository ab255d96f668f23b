"""Job types by key. The database stores the key, never a dotted path from user input."""
import functools
import shlex
from dataclasses import dataclass, field
from typing import Callable

from marshmallow import Schema, ValidationError

DEFAULT_QUEUE = "default"
MAIL_QUEUE = "mail"  # run report emails (execution/notify.py), served by the normal workers


class UnknownJobType(KeyError):
    """A stored key no installed job type answers to (renamed in an upgrade, or its module
    dropped from the configured JOBTYPE_MODULES)."""

    def __str__(self):
        return f"Its job type {self.args[0]!r} is not installed."


class InvalidArguments(ValueError):
    """Run arguments or parameters that the job type refuses; errors maps field -> message."""

    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class NoParams(Schema):
    pass


@dataclass(frozen=True)
class SystemJob:
    """A job that a job type declares in code: one per installation, created at start."""

    name: str
    description: str


@dataclass(frozen=True)
class JobType:
    key: str
    label: str
    run: Callable  # run(ctx, **params)
    params: type[Schema] = NoParams
    user_creatable: bool = False
    automatic_plan: dict | None = None
    queue: str = DEFAULT_QUEUE
    # At most one run of the queue in progress at a time, across every worker, in the order they
    # were queued (execution/queues.py). A queue is serial if a job type on it says so.
    serial_queue: bool = False
    timeout: int = 6 * 3600  # seconds a run may take before RQ stops it
    system_job: SystemJob | None = None
    # Its runs' output files are the archive of exported files: they outlive the run history
    # (purge_history keeps them), and removing or deleting the job leaves them.
    archive_files: bool = False
    # Who sees the type's jobs and runs (auth/permissions.hidden_job_types): None for everyone, a
    # tuple of role names, or a function of the user (support scripts: the support_roles setting).
    visible_to: tuple | Callable | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)

    @functools.cached_property
    def schema(self) -> Schema:
        """The parameters' schema, made once (making one copies its fields); loading keeps no
        state in it."""
        return self.params()

    def load_params(self, data: dict) -> dict:
        """Validated parameters with defaults filled in; raises InvalidArguments."""
        try:
            return self.schema.load(data or {})
        except ValidationError as exc:
            raise InvalidArguments({k: " ".join(v) if isinstance(v, list) else str(v)
                                    for k, v in exc.messages.items()}) from None

    def params_for_run(self, stored: dict, args: str) -> dict:
        """The job's stored parameters overridden by `key=value` run arguments."""
        overrides = parse_args(args)
        unknown = set(overrides) - set(self.schema.fields)
        if unknown:
            raise InvalidArguments({"args": f"Unknown argument(s): {', '.join(sorted(unknown))}. "
                                            f"Known: {', '.join(self.schema.fields) or 'none'}."})
        return self.load_params({**(stored or {}), **overrides})


def parse_args(args: str) -> dict:
    """'duration=5 fail_at_end=yes' -> {'duration': '5', 'fail_at_end': 'yes'}."""
    try:
        tokens = shlex.split(args or "")
    except ValueError as exc:
        raise InvalidArguments({"args": f"Cannot read the arguments: {exc}."}) from None
    result = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise InvalidArguments({"args": f"Arguments are key=value pairs; got {token!r}."})
        if key in result:
            # Which one was meant is a guess: refuse rather than run with the wrong one.
            raise InvalidArguments({"args": f"{_short(key)} is given twice ({_short(key + '=' + result[key])} "
                                            f"and {_short(token)}); give each argument once."})
        result[key] = value
    return result


def _short(text: str) -> str:
    """Input quoted in a message, cut so that a message never echoes a long argument."""
    return text if len(text) <= 40 else text[:39] + "…"


_REGISTRY: dict[str, JobType] = {}


def register(job_type: JobType) -> JobType:
    _REGISTRY[job_type.key] = job_type
    return job_type


def get(key: str) -> JobType:
    load_builtin()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownJobType(key) from None


def get_or_none(key: str) -> JobType | None:
    try:
        return get(key)
    except UnknownJobType:
        return None


def is_known(key: str) -> bool:
    load_builtin()
    return key in _REGISTRY


def all_types() -> list[JobType]:
    load_builtin()
    return sorted(_REGISTRY.values(), key=lambda jt: jt.key)


def queue_names() -> list[str]:
    """Every queue some job type runs on, the default first and the mail queue last (a worker
    takes runs before report emails)."""
    names = {jt.queue for jt in all_types()}
    return [DEFAULT_QUEUE] + sorted(names - {DEFAULT_QUEUE, MAIL_QUEUE}) + [MAIL_QUEUE]


_loaded = False


def load_builtin():
    """Import the shipped job types and the site modules the configuration lists
    (Config.JOBTYPE_MODULES, from FIRETIME_JOBTYPE_MODULES); importing a job type module
    registers it. Done once per process, on first use (not at import of this module, so that
    importing the registry has no side effects); later calls cost one test."""
    global _loaded
    if _loaded:
        return
    import importlib

    from webapp.jobtypes import export_dataset, import_data, linkage, script, system  # noqa: F401

    for module in _configured_modules():
        importlib.import_module(module)
    _loaded = True


def _configured_modules() -> tuple[str, ...]:
    from flask import current_app, has_app_context

    if has_app_context():
        return tuple(current_app.config.get("JOBTYPE_MODULES", ()))
    from config import Config  # a script without an app: the same setting, read the same way

    return Config().JOBTYPE_MODULES
