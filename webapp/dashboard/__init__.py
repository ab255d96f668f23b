"""The page after sign-in: what runs now, what failed, what fires next."""


def init_app(app):
    from webapp.dashboard.routes import bp

    app.register_blueprint(bp)
