def init_app(app):
    from webapp.jobs.routes import bp

    app.register_blueprint(bp)
