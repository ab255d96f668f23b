"""The audit trail: who changed what, filtered, and downloaded as CSV."""


def init_app(app):
    from webapp.audit.routes import bp

    app.register_blueprint(bp)
