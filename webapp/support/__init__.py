"""The hidden support page (SPEC 8, S2): script jobs, their versions, and the child process that runs them."""


def init_app(app):
    from webapp.support.routes import bp

    app.register_blueprint(bp)
