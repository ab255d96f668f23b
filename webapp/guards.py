"""What every request must be before a view sees it: ids a database column can hold, text without
control characters (PostgreSQL cannot store NUL), JSON of sane depth, query values of sane length.
Checked once for the whole app, so no view needs its own check."""
import json

from flask import abort, current_app, request
from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # ids are INTEGER columns
MAX_QUERY_VALUE = 2048  # characters in one query-string name or value (browsers' practical URL size)
MAX_JSON_DEPTH = 32  # nesting of a JSON body; the API takes flat objects
_TOO_DEEP = f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels."

# C0 control characters (and DEL). Text fields may hold tab and line breaks; a query value or a
# path never needs them (a CR/LF there only serves header injection).
_CONTROLS = {chr(c) for c in range(32)} | {"\x7f"}
_TEXT_CONTROLS = _CONTROLS - {"\t", "\n", "\r", "\x7f"}
_QUERY_CONTROLS = _CONTROLS - {"\t"}


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: an id as the database holds it, 1 to 2**31-1 written canonically.
    Werkzeug's own matches Unicode digits (`/jobs/٣` is job 3), leading zeros (`/jobs/01`) and
    numbers no INTEGER column holds; each of those is a 404 here, as any other unknown path."""

    regex = r"[1-9][0-9]{0,9}"

    def __init__(self, map):
        super().__init__(map, min=1, max=MAX_ID)


def id_param_schema(converter) -> dict:
    """How the OpenAPI document describes an id in a path."""
    return {"type": "integer", "minimum": converter.min, "maximum": converter.max}


def max_request_bytes(limit):
    """Let one view take bodies up to `limit` bytes (an upload) instead of MAX_CONTENT_LENGTH; the
    guard applies it before anything reads the body. `limit` may be a function, asked at each
    request (a limit that is a setting)."""
    def mark(view):
        view.max_request_bytes = limit
        return view
    return mark


def init_app(app):
    """Before the blueprints (their rules use the converter) and before CSRFProtect (which reads the form)."""
    app.url_map.converters["int"] = IdConverter
    app.before_request(refuse_malformed_input)


def refuse_malformed_input():
    """400 for a control character in the path, query or body, an over-long query value, or a JSON
    body that cannot be read or is nested too deeply; 413 for a body over the size limit. Messages
    name the field."""
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "max_request_bytes", None):
        limit = view.max_request_bytes
        request.max_content_length = limit() if callable(limit) else limit
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        # Whether or not the view would read it: the same answer on every route.
        abort(413, description=f"The request body is larger than the {limit} bytes this address takes.")
    if _has(request.path, _CONTROLS):
        abort(400, description="The address contains a control character.")
    for name, value in request.args.items(multi=True):
        if len(name) > MAX_QUERY_VALUE or len(value) > MAX_QUERY_VALUE:
            abort(400, description=f"The query parameter {_shown(name)} is longer than "
                                   f"{MAX_QUERY_VALUE} characters.")
        if _has(name, _QUERY_CONTROLS) or _has(value, _QUERY_CONTROLS):
            abort(400, description=f"The query parameter {_shown(name)} contains a control character.")
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    for name, text in _body_texts():
        if _has(text, _TEXT_CONTROLS):
            abort(400, description=f"The field {_shown(name)} contains a control character (such as NUL); "
                                   "text may hold only tabs and line breaks.")


def _has(text: str, characters: set) -> bool:
    return not characters.isdisjoint(text)


def _shown(name: str) -> str:
    return repr(name[:40])


def _body_texts() -> list[tuple[str, str]]:
    """(field name, text) for every name and text value of a form or JSON body."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        pairs = [(name, text) for name, value in request.form.items(multi=True) for text in (name, value)]
        return pairs + [(name, text) for name, file in request.files.items(multi=True)
                        for text in (name, file.filename or "")]
    return _json_texts() if request.is_json else []


def _json_texts() -> list[tuple[str, str]]:
    """(nearest key, text) for every key and string in the JSON body; 400 for a body that is not
    JSON, here for every route, since parsers differ in what they let escape (webargs lets a
    ValueError for a 5000-digit number through, Python's parser a RecursionError)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return []  # no body: the view decides whether it needs one
    try:
        document = json.loads(raw.decode("utf-8"))
    except RecursionError:  # the parser recurses per level: "[" * 100000 exhausts the stack
        abort(400, description=_TOO_DEEP)
    except ValueError as exc:  # malformed JSON, not UTF-8, a number of over 4300 digits
        abort(400, description=f"The body is not valid JSON: {str(exc)[:200]}")
    texts, pending = [], [(document, 1, "body")]
    while pending:  # iterative: deep input must not recurse here either
        value, depth, where = pending.pop()
        if isinstance(value, (dict, list)) and depth > MAX_JSON_DEPTH:
            abort(400, description=_TOO_DEEP)
        if isinstance(value, dict):
            texts.extend((key, key) for key in value)
            pending.extend((item, depth + 1, key) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((item, depth + 1, where) for item in value)
        elif isinstance(value, str):
            texts.append((where, value))
    return texts
