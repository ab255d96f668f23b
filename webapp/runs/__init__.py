def init_app(app):
    from webapp.runs.routes import bp

    app.register_blueprint(bp)
