"""Plain records of what git reports, shared by gitops (which reads them) and the domain (which reasons on them)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

_C = TypeVar("_C", bound=type[Any])


def fast_frozen_init(cls: _C) -> _C:
    """Give a frozen, slotted dataclass an `__init__` that stores fields through their slots.

    The generated `__init__` of a frozen dataclass assigns each field with a looked-up
    `object.__setattr__`; calling each slot's own setter does the same store at about half the
    cost, which counts for the records made once per commit. Signature, defaults, equality,
    hashing and the refusal of later assignment are all unchanged.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which this __init__ would skip")
    names: list[str] = []
    args: list[str] = []
    scope: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        if not f.init or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} needs the dataclass-made __init__")
        names.append(f.name)
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            scope[f"_d{i}"] = f.default
            args.append(f"{f.name}=_d{i}")
        scope[f"_s{i}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
    body = "".join(f"    _s{i}(self, {name})\n" for i, name in enumerate(names)) or "    pass\n"
    source = f"def __init__(self, {', '.join(args)}):\n{body}"
    namespace: dict[str, Any] = {}
    exec(source, scope, namespace)  # noqa: S102 - the source is built from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init
    return cls


@fast_frozen_init
@dataclasses.dataclass(frozen=True, slots=True)
class TagRef:
    """One tag as `git for-each-ref` reports it, peeled to the commit it names."""

    name: str  # short name, e.g. "v1.2.0" (without refs/tags/)
    sha: str  # 40-hex commit the tag points to (annotated tags peeled)
    annotated: bool
    created: int  # unix seconds: tagger date for annotated tags, committer date otherwise


@fast_frozen_init
@dataclasses.dataclass(frozen=True, slots=True)
class RawCommit:
    """One commit as a single bulk `git log` reports it."""

    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored: int  # unix seconds
    message: str  # full message: subject, blank line, body (trailers included)
    files: tuple[str, ...] = ()  # paths touched (vs. first parent); empty for merges

    @property
    def subject(self) -> str:
        """The first line of the message, stripped."""
        return self.message.split("\n", 1)[0].strip()
