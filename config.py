"""Every setting comes from the environment, with defaults that work on one machine."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def parse_bool(value, default=False):
    if value is None or value == "":
        return default
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def env(name, default=None):
    return os.environ.get(name, default)


def parse_list(value) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c')."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def env_int(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


class Config:
    """Read at app creation (not import), so tests and commands can set the environment first."""

    def __init__(self):
        instance = Path(env("FIRETIME_INSTANCE_DIR", BASE_DIR / "instance"))
        self.INSTANCE_DIR = str(instance)
        self.SECRET_KEY = env("SECRET_KEY", "dev-only-change-me")
        self.SQLALCHEMY_DATABASE_URI = env("DATABASE_URL", f"sqlite:///{instance / 'firetime.db'}")
        self.REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.REDIS_SOCKET_TIMEOUT = env_int("FIRETIME_REDIS_SOCKET_TIMEOUT", 5)
        # All plan wall times (daily 02:30, period starts, cron) are read in this zone.
        self.TIMEZONE = env("FIRETIME_TIMEZONE", "UTC")
        self.FILES_DIR = env("FIRETIME_FILES_DIR", str(instance / "files"))
        # Import jobs read ODM files from here, or from a subdirectory of it (never outside);
        # each file goes to processed/<date>/ or failed/ under the folder it was read from.
        self.IMPORT_DIR = env("FIRETIME_IMPORT_DIR", str(instance / "import"))
        self.RETENTION_DAYS = env_int("FIRETIME_RETENTION_DAYS", 90)
        # Support scripts (SPEC 8) run in a child process killed past these limits; both are
        # defaults of settings an administrator may change on the settings page.
        self.SCRIPT_TIME_LIMIT = env_int("FIRETIME_SCRIPT_TIME_LIMIT", 600)  # seconds
        self.SCRIPT_MEMORY_MB = env_int("FIRETIME_SCRIPT_MEMORY_MB", 512)  # address space, MiB
        # Linkage projects (SPEC 9): the largest envelope upload, checked while it streams; the
        # match probability that makes a pair a match; whether the match step trains its model
        # (EM) or uses fixed parameters; and Splink's backend ("duckdb" here, "spark" on a cluster).
        # All four are defaults of settings on the settings page.
        self.ENVELOPE_MAX_MB = env_int("FIRETIME_ENVELOPE_MAX_MB", 200)
        self.LINKAGE_THRESHOLD = float(env("FIRETIME_LINKAGE_THRESHOLD", "0.9"))
        self.LINKAGE_TRAIN = env("FIRETIME_LINKAGE_TRAIN", "1") not in ("0", "false", "no", "off")
        self.LINKAGE_BACKEND = env("FIRETIME_LINKAGE_BACKEND", "duckdb")
        # A run's worker refreshes a heartbeat this often; a run whose heartbeat is gone
        # for RUN_DEAD_AFTER seconds is failed as "worker died".
        self.HEARTBEAT_SECONDS = env_int("FIRETIME_HEARTBEAT_SECONDS", 5)
        self.RUN_DEAD_AFTER = env_int("FIRETIME_RUN_DEAD_AFTER", 30)
        # Job code is asked to stop first; after this grace the work horse is killed.
        self.CANCEL_GRACE_SECONDS = env_int("FIRETIME_CANCEL_GRACE_SECONDS", 10)
        self.SCHEDULER_INTERVAL = env_int("FIRETIME_SCHEDULER_INTERVAL", 1)
        self.RESYNC_SECONDS = env_int("FIRETIME_RESYNC_SECONDS", 60)
        self.REAP_SECONDS = env_int("FIRETIME_REAP_SECONDS", 5)
        self.LIVELOG_TTL = env_int("FIRETIME_LIVELOG_TTL", 3600)
        # Site modules of job types (importing one registers its types), comma separated.
        self.JOBTYPE_MODULES = parse_list(env("FIRETIME_JOBTYPE_MODULES"))
        self.LOG_MAX_LINES = env_int("FIRETIME_LOG_MAX_LINES", 100_000)
        # A longer log line keeps this many characters and a note of its length.
        self.LOG_MAX_LINE_CHARS = env_int("FIRETIME_LOG_MAX_LINE_CHARS", 10_000)
        # Run report emails (flask-mailman), sent from the "mail" queue by the workers.
        # Links in the emails start with BASE_URL: the address people reach the console at.
        self.BASE_URL = env("FIRETIME_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
        self.MAIL_BACKEND = env("MAIL_BACKEND", "smtp")  # "console" prints mails instead
        self.MAIL_SERVER = env("MAIL_SERVER", "localhost")
        self.MAIL_PORT = env_int("MAIL_PORT", 25)
        self.MAIL_USE_TLS = parse_bool(env("MAIL_USE_TLS"), False)  # STARTTLS
        self.MAIL_USE_SSL = parse_bool(env("MAIL_USE_SSL"), False)  # TLS from the start (port 465)
        self.MAIL_USERNAME = env("MAIL_USERNAME") or None
        self.MAIL_PASSWORD = env("MAIL_PASSWORD") or None
        self.MAIL_DEFAULT_SENDER = env("MAIL_DEFAULT_SENDER", "firetime@localhost")
        self.MAIL_TIMEOUT = env_int("MAIL_TIMEOUT", 10)  # seconds for each SMTP step
        # Seconds before each retry of a failed delivery; after the last one it is failed.
        self.MAIL_RETRY_DELAYS = [int(s) for s in env("FIRETIME_MAIL_RETRY_DELAYS", "30,120,600").split(",")
                                  if s.strip()]
        # Reverse proxies in front of the web server: their X-Forwarded-For/-Proto headers are
        # trusted this many hops deep, so that per-address sign-in limits see the client.
        self.PROXY_HOPS = env_int("FIRETIME_PROXY_HOPS", 0)
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = parse_bool(env("FIRETIME_SECURE_COOKIES"), False)
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        self.WTF_CSRF_TIME_LIMIT = None  # tokens last the session; a console tab stays open all day
        # A signed-in session ends after this many minutes without a request (server-side).
        self.SESSION_IDLE_MINUTES = env_int("FIRETIME_SESSION_IDLE_MINUTES", 480)
        # Requests are small except uploads; views that take files raise this for themselves.
        self.MAX_CONTENT_LENGTH = env_int("FIRETIME_MAX_REQUEST_BYTES", 1024 * 1024)
        self.MAX_FORM_MEMORY_SIZE = self.MAX_CONTENT_LENGTH
        # Sign-in throttling (Flask-Limiter on the same Redis, in memory when Redis is away):
        # failed sign-ins per account and per address, and bad API tokens per address.
        self.RATELIMIT_STORAGE_URI = env("FIRETIME_RATELIMIT_STORAGE_URI", self.REDIS_URL)
        self.LOGIN_FAILURES_PER_ACCOUNT = env("FIRETIME_LOGIN_FAILURES_PER_ACCOUNT", "5 per 5 minutes")
        self.LOGIN_FAILURES_PER_ADDRESS = env("FIRETIME_LOGIN_FAILURES_PER_ADDRESS", "30 per 5 minutes")
        self.API_TOKEN_FAILURES_PER_ADDRESS = env("FIRETIME_API_TOKEN_FAILURES_PER_ADDRESS", "30 per minute")
        # OpenAPI document, generated from the API code by flask-smorest.
        self.API_TITLE = "Firetime API"
        self.API_VERSION = "1"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/api"
        self.OPENAPI_JSON_PATH = "openapi.json"


class TestConfig(Config):
    def __init__(self):
        super().__init__()
        self.TESTING = True
        self.HEARTBEAT_SECONDS = env_int("FIRETIME_HEARTBEAT_SECONDS", 1)
        self.RUN_DEAD_AFTER = env_int("FIRETIME_RUN_DEAD_AFTER", 4)
        self.CANCEL_GRACE_SECONDS = env_int("FIRETIME_CANCEL_GRACE_SECONDS", 2)
        self.REAP_SECONDS = env_int("FIRETIME_REAP_SECONDS", 1)


class ProductionConfig(Config):
    def __init__(self):
        super().__init__()
        self.REQUIRE_SECRET_KEY = True
        self.SESSION_COOKIE_SECURE = parse_bool(env("FIRETIME_SECURE_COOKIES"), True)
