"""The archive of exported files: every export's file the user may see, with download links."""


def init_app(app):
    from webapp.archive.routes import bp

    app.register_blueprint(bp)
