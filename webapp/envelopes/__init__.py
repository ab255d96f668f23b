"""The envelopes page (SPEC 9, S4): upload, every envelope with its jobs, all jobs, the processing queue."""


def init_app(app):
    from webapp.envelopes.routes import bp

    app.register_blueprint(bp)
