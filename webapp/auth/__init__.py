from webapp.extensions import db, login_manager


def init_app(app):
    from webapp.auth.routes import bp
    from webapp.models import User

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."

    @login_manager.user_loader
    def load_user(user_id):
        user = db.session.get(User, int(user_id))
        return user if user is not None and user.can_sign_in else None

    app.register_blueprint(bp)
