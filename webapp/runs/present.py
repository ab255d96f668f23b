"""What a run's messages and log lines show of the server: the one place that hides server file
paths from everyone but superadmins.

A failure's message and its traceback (a debug line written when job code raises, see
execution/runner.py) name files on the server: "/srv/app/.venv/lib/.../base.py", an import
directory, an output file. Those tell an administrator of one domain how the installation is laid
out; they need the file name and the line, not where it lives. So every such path is shown as
"…/<file name>", unless the reader may see the server itself (a superadmin).

Live log lines are rendered once for every viewer of a run (webapp/runs/fanout.py), so they always
hide paths; a superadmin sees them in lines read from the database (the run page, the popup once
the run ended, the download).
"""
import re

from webapp.auth.permissions import can_see_server_paths

HIDDEN = "…/"
# An absolute POSIX path of two or more parts. The look-behind keeps URLs ("https://host/a/b":
# every slash there follows a word character, a colon or a slash) and relative paths ("a/b/c")
# as they are.
_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+~-]+/)+([\w.@+~-]+)")


def shows_server_paths(user) -> bool:
    """Whether `user` may read server file paths in messages and logs: superadmins only."""
    return can_see_server_paths(user)


def hide_paths(text: str, show: bool = False) -> str:
    """`text` with every absolute server path cut to "…/<file name>", unless `show`."""
    if show or not text or "/" not in text:
        return text or ""
    return _PATH.sub(lambda match: HIDDEN + match[1], text)


def init_app(state) -> None:
    """Blueprint record: the filter `hide_paths` for every template (`text | hide_paths(show)`)."""
    state.app.add_template_filter(hide_paths)
