"""The OpenAPI document at /api/v1/openapi.json, assembled from each API module's PATHS."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import PATHS, bp, schemas

PROBLEM = {"description": "A problem (RFC 9457)",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


RESPONSES: list[type[BaseModel]] = [
    schemas.Problem, schemas.Projects, schemas.Releases, schemas.ReleaseFull, schemas.CutAccepted,
    schemas.HotfixAccepted, schemas.ChangelogOut, schemas.Adoption, schemas.Environments,
    schemas.EnvironmentEnvelope, schemas.DeploymentEnvelope, schemas.DeployAccepted,
    schemas.DecisionEnvelope, schemas.JobEnvelope, schemas.AuditPage,
]
REQUESTS: list[type[BaseModel]] = [
    schemas.CutIn, schemas.HotfixIn, schemas.DeployIn, schemas.DecisionIn, schemas.LockIn,
    schemas.FreezeIn, schemas.StatusReportIn, schemas.SignedStatusReportIn, schemas.CancelIn,
]


def component_schemas() -> dict[str, Any]:
    """The JSON Schemas of every response and request model, as OpenAPI components."""
    _, found = models_json_schema(
        [(model, "serialization") for model in RESPONSES] + [(model, "validation") for model in REQUESTS],
        ref_template="#/components/schemas/{model}")
    return dict(sorted(found.get("$defs", {}).items()))


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
            "schemas": component_schemas(),
            "responses": {"Problem": PROBLEM},
        },
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI document (public: it describes, it does not reveal data)."""
    return jsonify(document())
