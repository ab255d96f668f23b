from flask_smorest import Api as SmorestApi


class Api(SmorestApi):
    # Each operation documents its own error answers (webapp.api.routes.errors), not a catch-all.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        """Errors are answered by the app's one handler (JSON under /api, HTML elsewhere)."""


api = Api()


def init_app(app):
    from webapp.api.routes import blp
    from webapp.extensions import csrf
    from webapp.guards import IdConverter, id_param_schema

    api.init_app(app, spec_kwargs={"security": [{"bearerAuth": []}]})
    api.register_converter(IdConverter, id_param_schema)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "A token from `flask users token NAME`."}
    )
    csrf.exempt(blp)  # token-authenticated: no cookies, so no cross-site request to forge
    api.register_blueprint(blp)
