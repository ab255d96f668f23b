"""Gunicorn settings for the production web server:

    FIRETIME_ENV=production SECRET_KEY=... gunicorn -c gunicorn.conf.py "webapp:create_app()"

Every open live log (GET /runs/<id>/stream, server-sent events) holds its connection for the
length of the run, and every open console tab holds one or more. With threads, each of them held
a thread, and once they were all taken no other page answered. gevent's workers serve each
connection in a greenlet instead: a viewer waiting on Redis costs a few kilobytes and no thread,
and pages keep answering with hundreds of streams open.

The gevent worker monkey-patches the standard library (socket, ssl, select, time, threading...)
when the worker process starts, before it imports the app; redis-py and psycopg 3 then wait
cooperatively. So the app must not be preloaded in the master (preload_app stays off).

Once many people watch runs, serve the live logs (/runs/<id>/stream) from a second gunicorn
with this same file on another FIRETIME_BIND, behind a proxy that sends them there
(docs/deploy/nginx.conf): a greenlet is not preempted, so a page render holds up every live log
of its worker for its 10-20 ms.

Environment:
  FIRETIME_BIND    address(es) to listen on, comma-separated (default 0.0.0.0:$PORT, or
                   0.0.0.0:8000 without PORT)
  WEB_CONCURRENCY  worker processes (default: one per CPU, at least 2 and at most 4)
Any setting can also be overridden on the command line or with GUNICORN_CMD_ARGS.
"""
import os

wsgi_app = "webapp:create_app()"

bind = [address.strip() for address in
        (os.environ.get("FIRETIME_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}").split(",")
        if address.strip()]

worker_class = "gevent"
# The greenlets of one worker share one CPU: a second worker keeps pages and streams going while
# the other renders a long page. More than one per CPU only adds memory; more than four adds
# database connections (each worker has its own pool) more than it adds pages a second.
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, min(os.cpu_count() or 1, 4)))
# Simultaneous connections per worker (open streams, pages, keep-alive connections).
worker_connections = 1000

# A gevent worker tells the master it is alive from its own greenlet, so a stream open for hours
# never trips this; it only ends a worker whose event loop is stuck (a call that blocks without
# yielding, such as a long SQLite lock wait) for this long.
timeout = 60
# On a restart or shut-down, requests get this long to finish. Live logs do not finish by
# themselves: they are cut after it, and the browser's EventSource reconnects where it was
# (Last-Event-ID) to the new workers.
graceful_timeout = 10
# Idle keep-alive connections (between a browser or proxy and us) are closed after this.
keepalive = 5

# The app is loaded in each worker after it has monkey-patched, never in the master.
preload_app = False
# No max_requests: a worker's memory stays flat with hundreds of streams open (bench/viewers.py),
# and every planned restart would cut the live logs it serves.

# The heartbeat file lives in memory where there is a tmpfs: a slow disk must not make the
# master think a worker hung.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

proc_name = "firetime-web"

# No `gunicornc` control socket: its default path is one per user, which a second instance on
# the same machine (a test run, a staging copy) would take over.
control_socket_disable = True


def post_worker_init(worker):
    """Finish in this worker, before its first request, what the first requests would otherwise
    do while hundreds of others wait on the same event loop: configure the ORM's mappers (about
    0.1 s) and compile every template. Then what the worker keeps for good (modules, the app, its
    metadata, the compiled templates) leaves the garbage collector's sight: a full collection
    then walks only what requests made since, about a millisecond instead of the 35-200 ms during
    which every live log and page of the worker waited (bench/viewers.py)."""
    import gc

    from sqlalchemy.orm import configure_mappers

    configure_mappers()
    app = worker.wsgi
    for name in app.jinja_env.list_templates(extensions=["html", "txt"]):
        app.jinja_env.get_template(name)
    gc.collect()
    gc.freeze()
