"""Jinja filters: every time is shown in the configured server time zone."""
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app


def localtime(value, fmt="%Y-%m-%d %H:%M:%S"):
    if value is None or value == "":
        return ""
    if isinstance(value, str):  # ISO text from the live log stream
        value = datetime.fromisoformat(value)
    return value.astimezone(ZoneInfo(current_app.config["TIMEZONE"])).strftime(fmt)


def duration(delta):
    if delta is None:
        return ""
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def filesize(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def job_type_label(key):
    from webapp.jobtypes import registry

    try:
        return registry.get(key).label
    except registry.UnknownJobType:
        return key


def init_app(app):
    app.add_template_global(job_type_label)
    from webapp import presenters
    from webapp.audit.diff import changes

    app.add_template_global(changes, "audit_changes")
    # Every page says who started a run and a job's domain in the same words.
    app.add_template_global(presenters.trigger_label)
    app.add_template_global(presenters.domain_label)
    app.add_template_filter(localtime)
    app.add_template_filter(duration)
    app.add_template_filter(filesize)
