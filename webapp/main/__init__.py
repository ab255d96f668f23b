from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app, request


def init_app(app):
    from webapp.main.routes import bp, register_error_handlers
    from webapp.main import filters

    app.register_blueprint(bp)
    register_error_handlers(app)
    filters.init_app(app)

    @app.after_request
    def security_headers(response):
        # Scripts only from this site (no inline script); inline styles are used for progress bars.
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; "
                                    "form-action 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # Pages and API answers show what only their user may see: no browser history or proxy
        # keeps them. Static files are the same for everyone.
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def permissions():
        from webapp.auth.permissions import can_administer, can_manage_queues, can_use_support

        return {"can_administer": can_administer, "can_manage_queues": can_manage_queues,
                "can_use_support": can_use_support}

    @app.context_processor
    def server_time():
        tz = ZoneInfo(current_app.config["TIMEZONE"])
        return {"server_now": datetime.now(tz), "server_tz": current_app.config["TIMEZONE"]}
