"""Superadmin pages: users and their API tokens, domains, settings."""


def init_app(app):
    from webapp.admin.routes import bp

    app.register_blueprint(bp)
