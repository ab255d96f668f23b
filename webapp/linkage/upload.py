"""Receiving an envelope (S4 "Loading in an Envelope"): the uploaded file is copied to
FILES_DIR/envelopes/<project id>/<envelope id>.<zip|csv> in chunks, hashing and counting as it goes,
then the envelope's chain is queued. Whether the file is any good is the validate step's question
(webapp/linkage/ingest.py): an upload refused later shows as a Corrupt envelope with the reason, like
one refused here for its size, so every attempt is on the envelopes page."""
import hashlib
import os
import re
import uuid

from flask import current_app

from webapp.extensions import db
from webapp.linkage import chain
from webapp.models.audit import record
from webapp.models.linkage import Envelope, EnvelopeStatus
from webapp.models.settings import get_setting
from webapp.models.types import utcnow

CHUNK = 1 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a member, an empty archive, a spanned one
NAME_CHARS = 255
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class UploadRefused(Exception):
    """An upload refused outright (no file, no name): nothing is recorded; the message is for the form."""


def limit_bytes() -> int:
    """The upload limit (the envelope_max_mb setting) in bytes: the view's per-request body limit."""
    return int(get_setting("envelope_max_mb")) * 1024 * 1024


def too_large_reason() -> str:
    return f"The file is larger than the limit of {get_setting('envelope_max_mb')} MB."


def clean_name(name: str | None) -> str:
    """The uploaded file's own name, as the user knows it: no folders (a browser may send a whole
    Windows path), no control characters, bounded."""
    base = re.split(r"[\\/]", name or "")[-1]
    return _UNPRINTABLE.sub("", base).strip()[:NAME_CHARS]


def receive(user, project, file_storage) -> "Envelope":
    """Store an uploaded envelope (a werkzeug FileStorage) and queue its chain."""
    name = clean_name(getattr(file_storage, "filename", None))
    if file_storage is None or not name:
        raise UploadRefused("Choose a zip envelope or a CSV file to upload.")
    envelope = store(user, project, name, file_storage.stream)
    chain.start(envelope, user)
    return envelope


def store(user, project, name: str, stream) -> "Envelope":
    """Copy `stream` to the project's envelope folder and record the envelope (audited, committed);
    its chain is not started. Also the demo's way in."""
    if not chain.is_project(project):
        raise UploadRefused(f"{project.name} is not a linkage project.")
    folder = os.path.join(current_app.config["FILES_DIR"], "envelopes", str(project.id))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".upload-{uuid.uuid4().hex}")
    try:
        size, sha256, kind = _copy(stream, partial, limit_bytes())
    except _TooLarge:
        _remove(partial)
        return record_refused(user, project, name, too_large_reason())
    except OSError as exc:
        _remove(partial)
        raise UploadRefused(f"The file could not be stored: {exc.strerror or exc}.") from exc
    envelope = Envelope(project_id=project.id, name=name, kind=kind, size=size, sha256=sha256,
                        status=EnvelopeStatus.SUCCESS_ACTIVE, uploaded_by_id=getattr(user, "id", None),
                        uploaded_by_name=getattr(user, "username", "") or "")
    db.session.add(envelope)
    final = ""
    try:
        db.session.flush()
        envelope.path = os.path.join("envelopes", str(project.id), f"{envelope.id}.{kind}")
        final = os.path.join(current_app.config["FILES_DIR"], envelope.path)
        os.replace(partial, final)
        record("upload", "envelope", envelope, actor=user,
               after={"name": name, "kind": kind, "size": size, "sha256": sha256})
        db.session.commit()
    except BaseException:
        db.session.rollback()
        for path in (partial, final):
            if path:
                _remove(path)
        raise
    return envelope


class _TooLarge(Exception):
    pass


def _copy(stream, path: str, limit: int) -> tuple[int, str, str]:
    """Copy in chunks (never the whole file in memory); (size, sha256, kind). The kind is the
    content's, not the name's: a zip by its magic bytes, anything else is read as a CSV."""
    digest, size, head = hashlib.sha256(), 0, b""
    with open(path, "wb") as out:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            size += len(chunk)
            if size > limit:
                raise _TooLarge()
            if len(head) < 4:
                head += chunk[:4 - len(head)]
            digest.update(chunk)
            out.write(chunk)
    return size, digest.hexdigest(), "zip" if head.startswith(ZIP_MAGIC) else "csv"


def _remove(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def record_refused(user, project, name: str, reason: str) -> "Envelope":
    """An upload refused before it was stored (over the size limit): a Corrupt envelope with the
    reason and no file, so the attempt shows on the envelopes page."""
    name = clean_name(name) or "(no name)"
    envelope = Envelope(project_id=project.id, name=name, kind="zip" if name.lower().endswith(".zip") else "csv",
                        path="", status=EnvelopeStatus.CORRUPT, reason=reason, finished_at=utcnow(),
                        uploaded_by_id=getattr(user, "id", None), uploaded_by_name=getattr(user, "username", "") or "")
    db.session.add(envelope)
    db.session.flush()
    record("upload", "envelope", envelope, actor=user, after={"name": name, "refused": reason})
    db.session.commit()
    return envelope
