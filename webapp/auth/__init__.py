from webapp.extensions import login_manager


def init_app(app):
    from webapp.auth import sessions
    from webapp.auth.routes import bp

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.user_loader(sessions.load_user)
    app.before_request(sessions.load_before_the_view)

    app.register_blueprint(bp)
