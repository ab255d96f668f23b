"""Superadmin pages: users and their API tokens, domains, settings. Views parse the form, call
webapp.accounts / admin.domains / admin.site_settings, and render."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from webapp import accounts
from webapp.admin import domains as domain_ops
from webapp.admin import site_settings
from webapp.admin.forms import (DomainForm, PasswordForm, SettingsForm, TokenForm, UserCreateForm,
                                UserEditForm)
from webapp.auth.permissions import can_administer
from webapp.extensions import db
from webapp.forms import ConfirmForm
from webapp.models import ApiToken, Domain, Role, User
from webapp.models.settings import all_settings
from webapp.pagination import paginate

bp = Blueprint("admin", __name__, url_prefix="/admin")

USER_SORTS = {"username": User.username, "role": User.role, "email": User.email, "active": User.active,
              "last_login": User.last_login_at, "created": User.created_at}


@bp.before_request
@login_required
def _superadmins_only():
    """Admin pages are for superadmins; to anyone else they do not exist."""
    if not can_administer(current_user):
        abort(404)


def _get_or_404(model, object_id):
    obj = db.session.get(model, object_id)
    if obj is None:
        abort(404)
    return obj


# --- users -----------------------------------------------------------------------------------

@bp.route("/users")
def users():
    """Every user: role, domain, supervised domains, state; paged, sortable, findable."""
    find = request.args.get("q", "").strip()[:80]
    query = select(User).options(selectinload(User.domain), selectinload(User.supervised))
    if find:
        pattern = "%" + find.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                func.lower(User.email).like(pattern, escape="\\")))
    page = paginate(query, USER_SORTS, "username", per_page=50, tiebreak=User.id)
    context = dict(page=page, find=find, args={"q": find} if find else {})
    if request.htmx and request.htmx.target == "users-table":
        return render_template("admin/_users_table.html", **context)
    return render_template("admin/users.html", **context)


@bp.route("/users/new", methods=["GET", "POST"])
def user_new():
    """A form for a new user."""
    form = UserCreateForm().set_domains(domain_ops.flat(domain_ops.tree()))
    if form.validate_on_submit():
        domain = db.session.get(Domain, form.domain_id.data) if form.domain_id.data else None
        supervised = db.session.scalars(select(Domain).where(Domain.id.in_(form.supervised.data or []))).all()
        try:
            user = accounts.create_user(form.username.data, form.role.data, password=form.password.data or None,
                                        email=form.email.data or None, domain_name=domain.name if domain else None,
                                        supervise=[d.name for d in supervised], actor=current_user)
        except accounts.AccountError as exc:
            form.username.errors.append(str(exc))
        else:
            flash(f"{user.username} is created.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_template("admin/user_new.html", form=form), 200 if not form.errors else 400


def _user_page(user, *, profile=None, password=None, token=None, new_token=None, status=200):
    """The user page with its forms (one of them perhaps with errors) and, once, a new token."""
    nodes = domain_ops.flat(domain_ops.tree())
    if profile is None:
        profile = UserEditForm(data={"email": user.email, "role": user.role, "domain_id": user.domain_id,
                                     "supervised": [d.id for d in user.supervised]})
    profile.set_domains(nodes)
    tokens = db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                .order_by(ApiToken.revoked_at.isnot(None), ApiToken.created_at.desc())).all()
    return render_template("admin/user.html", user=user, profile=profile, password=password or PasswordForm(),
                           token_form=token or TokenForm(formdata=None), tokens=tokens, new_token=new_token,
                           confirm=ConfirmForm(), last_superadmin=accounts.is_last_active_superadmin(user)), status


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def user_detail(user_id):
    """One user: role, domains, password, state and API tokens."""
    user = _get_or_404(User, user_id)
    form = UserEditForm()
    if request.method == "POST":
        form.set_domains(domain_ops.flat(domain_ops.tree()))
        if form.validate_on_submit():
            domain = db.session.get(Domain, form.domain_id.data) if form.domain_id.data else None
            supervised = db.session.scalars(select(Domain).where(Domain.id.in_(form.supervised.data or []))).all()
            try:
                changed = accounts.update_user(user, role=form.role.data, email=form.email.data, domain=domain,
                                               supervised=supervised, actor=current_user)
            except accounts.AccountError as exc:
                db.session.rollback()
                form.role.errors.append(str(exc))
            else:
                flash(f"{user.username} is saved." if changed else "Nothing changed.", "success")
                if not can_administer(current_user):  # a superadmin who stepped down
                    return redirect(url_for("main.index"))
                return redirect(url_for("admin.user_detail", user_id=user.id))
        return _user_page(user, profile=form, status=400)
    return _user_page(user)


@bp.route("/users/<int:user_id>/password", methods=["POST"])
def user_password(user_id):
    """Set a new password for the user; every session of the user ends."""
    user = _get_or_404(User, user_id)
    form = PasswordForm()
    if not form.validate_on_submit():
        return _user_page(user, password=form, status=400)
    try:
        accounts.set_password(user, form.password.data, actor=current_user)
    except accounts.AccountError as exc:
        form.password.errors.append(str(exc))
        return _user_page(user, password=form, status=400)
    flash(f"The password of {user.username} is changed; every session of the user has ended.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


def _state_change(user_id, change, done):
    user = _get_or_404(User, user_id)
    ConfirmForm().validate_on_submit()  # CSRFProtect has checked the token already
    try:
        change(user, actor=current_user)
    except accounts.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(done.format(user=user.username), "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
def user_deactivate(user_id):
    """Stop the user signing in and using API tokens (not the last active superadmin)."""
    return _state_change(user_id, accounts.deactivate,
                         "{user} is deactivated: every session has ended and API tokens no longer work.")


@bp.route("/users/<int:user_id>/reactivate", methods=["POST"])
def user_reactivate(user_id):
    """Let a deactivated user sign in again."""
    return _state_change(user_id, accounts.reactivate, "{user} is active again.")


@bp.route("/users/<int:user_id>/tokens", methods=["POST"])
def token_new(user_id):
    """A new API token for the user, shown on this answer only."""
    user = _get_or_404(User, user_id)
    form = TokenForm()
    if not form.validate_on_submit():
        return _user_page(user, token=form, status=400)
    try:
        token, plain = accounts.issue_token(user, form.name.data, actor=current_user)
    except accounts.AccountError as exc:
        form.name.errors.append(str(exc))
        return _user_page(user, token=form, status=400)
    # Rendered, not redirected: the plain token must not travel through the session cookie.
    return _user_page(user, new_token=(token, plain))


@bp.route("/users/<int:user_id>/tokens/<int:token_id>/revoke", methods=["POST"])
def token_revoke(user_id, token_id):
    """Revoke one of the user's API tokens: it stops working at once."""
    token = db.session.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id))
    if token is None:
        abort(404)
    accounts.revoke_token(token, actor=current_user)
    flash(f"The token “{token.name or token.id}” is revoked.", "success")
    return redirect(url_for("admin.user_detail", user_id=user_id))


# --- domains ---------------------------------------------------------------------------------

@bp.route("/domains", methods=["GET", "POST"])
def domains():
    """The tree of domains, and a form for a new one."""
    nodes = domain_ops.tree()
    form = DomainForm().set_parents(domain_ops.flat(nodes))
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                domain = domain_ops.create(form.name.data, _parent(form), actor=current_user, oid=form.oid.data,
                                           kind=form.kind.data)
            except domain_ops.DomainError as exc:
                db.session.rollback()
                form[exc.field].errors.append(exc.message)
            else:
                flash(f"Domain “{domain.name}” is created.", "success")
                return redirect(url_for("admin.domains"))
        status = 400
    return render_template("admin/domains.html", nodes=nodes, form=form), status


def _parent(form):
    if not form.parent_id.data:
        return None
    parent = db.session.get(Domain, form.parent_id.data)
    if parent is None:
        raise domain_ops.DomainError("Choose a domain from the list.", "parent_id")
    return parent


@bp.route("/domains/<int:domain_id>", methods=["GET", "POST"])
def domain_detail(domain_id):
    """Rename a domain or move it under another; delete it if nothing refers to it."""
    domain = _get_or_404(Domain, domain_id)
    # A save that does not send the kind keeps it.
    form = DomainForm(data={"name": domain.name, "parent_id": domain.parent_id, "oid": domain.oid or "",
                            "kind": domain.kind} if request.method == "GET" else {"kind": domain.kind})
    form.set_parents(domain_ops.allowed_parents(domain))
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                changed = domain_ops.update(domain, form.name.data, _parent(form), actor=current_user,
                                            oid=form.oid.data, kind=form.kind.data)
            except domain_ops.DomainError as exc:
                db.session.rollback()
                form[exc.field].errors.append(exc.message)
            else:
                flash(f"Domain “{domain.name}” is saved." if changed else "Nothing changed.", "success")
                return redirect(url_for("admin.domains"))
        status = 400
    return render_template("admin/domain.html", domain=domain, form=form, confirm=ConfirmForm(),
                           reasons=domain_ops.why_not_deletable(domain)), status


@bp.route("/domains/<int:domain_id>/delete", methods=["POST"])
def domain_delete(domain_id):
    """Delete a domain nothing refers to; otherwise say what still does."""
    domain = _get_or_404(Domain, domain_id)
    name = domain.name
    try:
        domain_ops.delete(domain, actor=current_user)
    except domain_ops.DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.domain_detail", domain_id=domain_id))
    flash(f"Domain “{name}” is deleted.", "success")
    return redirect(url_for("admin.domains"))


# --- settings --------------------------------------------------------------------------------

@bp.route("/settings", methods=["GET", "POST"])
def settings():
    """Settings stored in the database; the environment gives their defaults."""
    current = all_settings()
    form = SettingsForm(data={key: list(value) if isinstance(value, (list, tuple)) else value
                              for key, (value, _) in current.items()} if request.method == "GET" else None,
                        current_sender=current["report_sender"][0])
    if form.validate_on_submit():
        changed = site_settings.save({key: form[key].data for key in site_settings.EDITABLE}, actor=current_user)
        flash("Settings saved: " + ", ".join(form[key].label.text for key in changed) + "." if changed
              else "Nothing changed.", "success")
        return redirect(url_for("admin.settings"))
    return render_template("admin/settings.html", form=form, current=current,
                           roles=Role), 200 if request.method == "GET" else 400
