from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app


def init_app(app):
    from webapp.main.routes import bp, register_error_handlers
    from webapp.main import filters

    app.register_blueprint(bp)
    register_error_handlers(app)
    filters.init_app(app)

    @app.context_processor
    def server_time():
        tz = ZoneInfo(current_app.config["TIMEZONE"])
        return {"server_now": datetime.now(tz), "server_tz": current_app.config["TIMEZONE"]}
