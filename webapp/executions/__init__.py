"""Every run the user may see, across jobs: filter, expand, retry, cancel."""


def init_app(app):
    from webapp.executions.routes import bp

    app.register_blueprint(bp)
