"""Firetime: create_app reads like a table of contents of the subsystems it binds."""
import logging
import os


def create_app(config_class=None):
    """The app; FIRETIME_ENV=production picks ProductionConfig when no class is given."""
    # Imported here, not at the top: every `webapp.x` import runs this module first, and a
    # support script's child process (python -m webapp.support.child) must not pay for Flask
    # and SQLAlchemy (0.3-0.5 s) unless the script uses the database.
    from flask import Flask
    from sqlalchemy import event

    from config import Config, ProductionConfig

    if config_class is None:
        config_class = ProductionConfig if os.environ.get("FIRETIME_ENV") == "production" else Config
    app = Flask(__name__, template_folder="../templates", static_folder="../static",
                instance_path=None)
    app.config.from_object(config_class())
    _validate(app)
    if app.config["PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    _configure_logging(app)

    from webapp import extensions, guards

    guards.init_app(app)  # first: routes use its id converter, CSRFProtect reads bodies it has checked

    extensions.db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            event.listen(extensions.db.engine, "connect", _sqlite_pragmas)
    extensions.migrate.init_app(app, extensions.db, directory=os.path.join(app.root_path, "..", "migrations"))
    extensions.csrf.init_app(app)
    extensions.htmx.init_app(app)
    extensions.mail.init_app(app)
    extensions.redis_client.init_app(app)

    from webapp import (admin, api, archive, audit, auth, cli, dashboard, datasets, envelopes, executions, jobs, main,
                        queues, runs, support)

    auth.init_app(app)
    main.init_app(app)
    dashboard.init_app(app)
    jobs.init_app(app)
    executions.init_app(app)
    queues.init_app(app)
    runs.init_app(app)
    datasets.init_app(app)
    archive.init_app(app)
    audit.init_app(app)
    admin.init_app(app)
    support.init_app(app)
    envelopes.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    return app


def _validate(app):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(app.config["TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(f"FIRETIME_TIMEZONE={app.config['TIMEZONE']!r} is not a known time zone") from None
    if app.config.get("REQUIRE_SECRET_KEY") and app.config["SECRET_KEY"] == "dev-only-change-me":
        raise RuntimeError("Set SECRET_KEY: the development default must not sign production sessions.")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(os.path.dirname(app.config["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]) or ".",
                    exist_ok=True)
    os.makedirs(app.config["FILES_DIR"], exist_ok=True)
    os.makedirs(app.config["IMPORT_DIR"], exist_ok=True)


def _configure_logging(app):
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


_wal_set = []  # once per process (and its forks): a new connection each run need not repeat it


def _sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite: WAL so readers never block the writer; wait for locks instead of failing."""
    cursor = dbapi_connection.cursor()
    # WAL stays set in the database file; the others hold per connection.
    for pragma in ("synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    if not _wal_set:
        cursor.execute("PRAGMA journal_mode=WAL")
        _wal_set.append(True)
    cursor.close()
