"""The OpenAPI document at /api/v1/openapi.json, assembled from each API module's PATHS."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from . import PATHS, bp

PROBLEM = {"description": "A problem (RFC 9457)",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "relapp API", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(PATHS.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {"type": "object", "required": ["title", "status", "detail"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"}}},
            },
            "responses": {"Problem": PROBLEM},
        },
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI document (public: it describes, it does not reveal data)."""
    return jsonify(document())
