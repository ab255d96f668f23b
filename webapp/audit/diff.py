"""Before and after of an audit record as a readable list of changes."""
import json
from dataclasses import dataclass

MAX_VALUE_CHARS = 300  # a long value (a script, recipients) is cut in the list; the record keeps it


@dataclass
class Change:
    field: str
    before: str | None  # None: the field was not there
    after: str | None


def changes(before: dict | None, after: dict | None) -> list[Change]:
    """The fields that differ between before and after, in a stable order; nested values are
    compared whole and shown as JSON."""
    before, after = before or {}, after or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return [Change("value", _text(before), _text(after))]
    out = []
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key), after.get(key)
        if key in before and key in after and old == new:
            continue
        out.append(Change(str(key), _text(old) if key in before else None, _text(new) if key in after else None))
    return out


def _text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
