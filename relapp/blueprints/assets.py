"""Browser assets from the npm registry (installed into node_modules by make), served by name."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory
from werkzeug.wrappers import Response

bp = Blueprint("assets", __name__, url_prefix="/assets")

NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
# Only these files are served: a name maps to a file inside one installed package.
FILES = {
    "htmx.js": "htmx.org/dist/htmx.min.js",
    "pico.css": "@picocss/pico/css/pico.min.css",
    "sortable.js": "sortablejs/Sortable.min.js",
}


@bp.get("/<name>")
def get(name: str) -> Response:
    """Serve one allowlisted asset file."""
    relative = FILES.get(name)
    if relative is None or not (NODE_MODULES / relative).is_file():
        abort(404, description=f"No asset named {name}; run `make run` to install assets.")
    return send_from_directory(NODE_MODULES, relative, max_age=3600)
