"""Audit records the user may read, narrowed by the page's filters; shared by the page and the CSV."""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func

from webapp.auth.permissions import audit_query
from webapp.models import AuditEvent

AUDIT_SORTS = {"at": AuditEvent.at, "who": AuditEvent.actor_name, "action": AuditEvent.action,
               "object": AuditEvent.object_type}


def _literal(text: str) -> str:
    """`text` for LIKE with % and _ meaning themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _start_of(day) -> datetime:
    """Midnight of `day` in the server's time zone, the zone every time on the pages is shown in."""
    return datetime.combine(day, time(), tzinfo=ZoneInfo(current_app.config["TIMEZONE"]))


def filtered(user, filters: dict):
    """audit_query(user) with the filters of AuditFilterForm.valid_values(): who (part of the name,
    any case), action and object type (exact), object id, and a range of whole days (both ends in)."""
    query = audit_query(user)
    if who := filters.get("who"):
        query = query.where(func.lower(AuditEvent.actor_name).like(f"%{_literal(who.lower())}%", escape="\\"))
    if action := filters.get("action"):
        query = query.where(AuditEvent.action == action.strip())
    if object_type := filters.get("object_type"):
        query = query.where(AuditEvent.object_type == object_type.strip())
    if object_id := filters.get("object_id"):
        query = query.where(AuditEvent.object_id == object_id)
    if day := filters.get("date_from"):
        query = query.where(AuditEvent.at >= _start_of(day))
    if day := filters.get("date_to"):
        query = query.where(AuditEvent.at < _start_of(day + timedelta(days=1)))
    return query
