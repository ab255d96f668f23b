from flask import request
from werkzeug.exceptions import TooManyRequests

from webapp.extensions import limiter, login_manager


def init_app(app):
    from webapp.auth import sessions, throttle
    from webapp.auth.routes import bp

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.user_loader(sessions.load_user)
    app.before_request(sessions.load_before_the_view)

    limiter.init_app(app)
    app.extensions["failure_counter"] = throttle.FailureCounter(limiter)

    # The API's own code checks tokens; these hooks around it throttle an address that keeps
    # sending bad ones.
    @app.before_request
    def refuse_throttled_api_callers():
        if request.path.startswith("/api/"):
            seconds = throttle.api_token_lock()
            if seconds:
                raise TooManyRequests(f"Too many requests with a bad API token from this address; "
                                      f"try again in {seconds} seconds.", retry_after=seconds)

    @app.after_request
    def count_bad_api_tokens(response):
        if (response.status_code == 401 and request.path.startswith("/api/")
                and request.headers.get("Authorization")):
            throttle.api_token_failed()
        return response

    app.register_blueprint(bp)
