"""A run's log as plain text for download: one line per log line ("time  LEVEL    message", the
continuation of a multi-line message indented), every line the run has: from the database once it
ended, from its live stream in Redis while it runs."""
from datetime import datetime

from redis.exceptions import RedisError

from webapp.execution import livelog
from webapp.extensions import redis_client
from webapp.main.filters import localtime
from webapp.runs import logs
from webapp.runs.present import hide_paths

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_line(at, level: str, message: str, show_paths: bool) -> str:
    text = hide_paths(message, show_paths).replace("\r\n", "\n").replace("\n", "\n" + " " * 30)
    return f"{localtime(at, TIME_FORMAT)}  {level.upper():<8} {text}\n"


def lines_of(run, show_paths: bool):
    """The log's text, a chunk of lines at a time (runs inside the request's context)."""
    if run.is_final:
        chunk = []
        for line in logs.all_lines(run.id):
            chunk.append(format_line(line.at, line.level, line.message, show_paths))
            if len(chunk) >= logs.DOWNLOAD_BATCH:
                yield "".join(chunk)
                chunk = []
        yield "".join(chunk)
        return
    try:
        live = livelog.all_lines(redis_client.conn, run.id)
    except RedisError:
        yield "# The run is in progress and its live log cannot be read now: Redis does not answer.\n"
        return
    yield "".join(format_line(datetime.fromisoformat(f["at"]), f["level"], f["msg"], show_paths) for f in live)
    yield f"# The run is {run.status_label.lower()}: these are its lines so far.\n"
