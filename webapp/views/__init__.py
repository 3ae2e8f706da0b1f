"""The pages people use. Every view needs a signed-in user unless marked @public (see webapp.auth)."""
from __future__ import annotations

from flask import Flask
from flask_login import current_user

from db.versions import model_status
from webapp import templating
from webapp.database import get_db
from webapp.views import account, documents, pages, training


def _template_globals() -> dict:
    if not current_user.is_authenticated:
        return {}
    # people see how many of their own documents wait, not everyone's; admins see the whole queue
    owner = None if current_user.is_admin else current_user.id
    return {"model_status": model_status(get_db(), owner_id=owner)}


def register_views(app: Flask) -> None:
    for blueprint in (account.bp, pages.bp, documents.bp, training.bp):
        app.register_blueprint(blueprint)
    app.context_processor(_template_globals)
    templating.init_app(app)
