"""Extensions, created unbound and bound to the app in create_app with init_app."""
import redis as redis_lib
from redis.driver_info import DriverInfo
from redis.maint_notifications import MaintNotificationsConfig
from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mailman import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints so that Alembic can alter them on SQLite and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RedisClient:
    """One redis-py client per app; connecting happens on first use, never at import."""

    def init_app(self, app):
        app.extensions["redis"] = self.make(app)

    @staticmethod
    def make(app) -> redis_lib.Redis:
        """A client as the app configures it (a worker in the same process changes its pool's
        socket timeout for its blocking waits: RQ does)."""
        return redis_lib.Redis.from_url(
            app.config["REDIS_URL"], health_check_interval=30, socket_connect_timeout=5,
            # A Redis that hangs (stopped, a network cut dropping packets) fails a call after this
            # instead of holding a page for ever; longer than any blocking read the web makes
            # (the live log's XREAD blocks 2 s). RQ raises it for a worker's own blocking waits.
            socket_timeout=app.config["REDIS_SOCKET_TIMEOUT"],
            # Resolved once here: left to itself, redis-py reads its own package metadata for
            # every new connection, and every work horse makes one (3 ms a run).
            driver_info=DriverInfo(name=None, lib_version=None),
            # No CLIENT SETINFO / maintenance-notification handshake on each new connection (two
            # and one round trips, which Redis 7.0 refuses anyway): every work horse makes one.
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )

    @property
    def conn(self) -> redis_lib.Redis:
        return current_app.extensions["redis"]


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)  # batch: SQLite can ALTER too
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
mail = Mail()
redis_client = RedisClient()
# Counts failed sign-ins and bad API tokens (webapp/auth/throttle.py) in RATELIMIT_STORAGE_URI.
# Storage errors come wrapped in one type, and quickly, so that a Redis outage is noticed at once.
limiter = Limiter(get_remote_address, strategy="fixed-window",
                  storage_options={"wrap_exceptions": True, "socket_connect_timeout": 1, "socket_timeout": 1})
