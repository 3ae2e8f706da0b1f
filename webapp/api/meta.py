"""The API's own description."""
from flask import Blueprint, jsonify

from webapp.api.openapi import openapi_document
from webapp.auth import public

bp = Blueprint("meta", __name__)


@bp.get("/openapi.json")
@public
def openapi():
    return jsonify(openapi_document())
