"""Bounds on the numbers and JSON bodies a request can carry, so hostile input gets a 4xx.

- `<int:...>` in a route is `BoundedIntConverter`: a path number above ID_MAX matches no route
  and answers 404, instead of reaching the database and failing there (an OverflowError from
  SQLite above 2^63-1, "integer out of range" from PostgreSQL above 2^31-1).
- `int_arg` reads an integer query parameter: not a whole number, or outside its range, is a
  400 with a sentence.
- `BoundedJSONProvider` answers a JSON body nested too deeply to parse with a 400 instead of a
  RecursionError.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter, Map, ValidationError

from ..exceptions import ServiceError

# The largest number relapp's INTEGER columns (ids, log line numbers) hold on every backend:
# PostgreSQL's `integer` is 32 bits (SQLite's is 64). No number in a URL or a query goes beyond it.
ID_MAX = 2**31 - 1
_MAX_DIGITS = len(str(ID_MAX))

TOO_DEEP = "The JSON body is nested too deeply."


class BoundedIntConverter(IntegerConverter):
    """Werkzeug's `int` converter with a default maximum of ID_MAX: a larger number is no match."""

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = None,
                 max: int | None = None, signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, ID_MAX if max is None else max, signed)

    def to_python(self, value: str) -> Any:
        # Refuse very long digit strings before int() parses them (it would refuse above 4300
        # digits anyway, after the work).
        if len(value.lstrip("-")) > _MAX_DIGITS:
            raise ValidationError()
        return super().to_python(value)


def int_arg(name: str, default: int | None, *, low: int = 0, high: int = ID_MAX,
            clamp: bool = False) -> int | None:
    """The integer query parameter `name`, or `default` when it is absent or empty.

    Not a whole number, or outside `low`..`high`, is a 400 with a sentence; with `clamp` (page
    sizes: "at most N") a number outside the range is brought into it instead, as long as it
    is within ±ID_MAX at all.
    """
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit():
        raise ServiceError(f"The query parameter '{name}' must be a whole number.",
                           code="invalid_parameter")
    if len(digits.lstrip("0")) > _MAX_DIGITS or not -ID_MAX <= int(text) <= ID_MAX:
        raise ServiceError(f"The query parameter '{name}' is out of range: it must be between "
                           f"{low} and {high}.", code="invalid_parameter")
    value = int(text)
    if clamp:
        return min(max(value, low), high)
    if not low <= value <= high:
        raise ServiceError(f"The query parameter '{name}' is out of range: it must be between "
                           f"{low} and {high}.", code="invalid_parameter")
    return value


class JSONTooDeep(BadRequest):
    """A JSON body nested deeper than the parser's recursion allows."""

    description = TOO_DEEP


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, whose `loads` turns a RecursionError (a body like `[[[[…` nested
    100,000 deep) into a 400 instead of an internal error. `request.get_json(silent=True)`
    silences only ValueError, so the 400 reaches the caller with its own sentence."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise JSONTooDeep() from None


def init_app(app: Flask) -> None:
    """Bound every `<int:...>` route registered after this, and JSON bodies. Call it before the
    blueprints are registered: a rule takes its converter when it is added."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.json = BoundedJSONProvider(app)
