import os

from flask import current_app


def open_run_file(file):
    """Open a run's output file for reading, refusing any path that leaves the files directory."""
    root = os.path.realpath(current_app.config["FILES_DIR"])
    path = os.path.realpath(os.path.join(root, file.path))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return None
    return open(path, "rb")
