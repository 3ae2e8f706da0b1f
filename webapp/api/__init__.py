"""The JSON API, `/api/v1`. Authentication: `Authorization: Bearer <token>` (or a signed-in session).

The OpenAPI document at /api/v1/openapi.json describes every route here.
"""
from flask import Blueprint

from webapp.api import documents, jobs, meta, training

api = Blueprint("api", __name__, url_prefix="/api/v1")
for child in (documents.bp, jobs.bp, training.bp, meta.bp):
    api.register_blueprint(child)
