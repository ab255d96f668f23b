"""Datasets: named selections of a domain's items, and Export now."""


def init_app(app):
    from webapp.datasets.routes import bp

    app.register_blueprint(bp)
