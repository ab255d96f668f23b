"""The page after sign-in: what runs now, what failed, what fires next."""


def init_app(app):
    from webapp import presenters
    from webapp.dashboard.routes import bp

    app.register_blueprint(bp)
    # Every page says who started a run and a job's domain in the same words.
    app.add_template_global(presenters.trigger_label)
    app.add_template_global(presenters.domain_label)
