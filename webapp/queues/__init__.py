"""The queues page: what runs, waits and is planned on each queue, the workers, cancel per entry."""


def init_app(app):
    from webapp.queues.routes import bp

    app.register_blueprint(bp)
