import os

from flask import current_app


def open_run_file(file):
    """Open a run's output file for reading, refusing any path that leaves the files directory."""
    root = os.path.realpath(current_app.config["FILES_DIR"])
    path = os.path.realpath(os.path.join(root, file.path))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return None
    return open(path, "rb")


def media_type(file) -> str:
    """A file's media type without parameters: Flask's send_file adds "; charset=utf-8" to text
    types itself (a stored "text/csv; charset=utf-8" came out with the charset twice)."""
    return (file.content_type or "application/octet-stream").split(";")[0].strip()

