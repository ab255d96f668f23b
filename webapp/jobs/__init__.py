def init_app(app):
    from webapp.jobs import page  # noqa: F401  (adds the job page and form views to the blueprint)
    from webapp.jobs.routes import bp

    app.register_blueprint(bp)
