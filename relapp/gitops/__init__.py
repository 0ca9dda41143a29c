"""The only package of relapp that runs git: validated names in, full SHAs and plain records out.

Every git process goes through `process.run` (or `process.run_streaming`), which uses an argv
list (never a shell), a scrubbed environment that cannot prompt, a timeout that kills the whole
process group, and masks credentials in anything it reports. Reads are one plumbing call each;
nothing here walks history object by object.

We call the git binary directly rather than through GitPython's keyword-to-option
translation, because that translation is where GitPython's option-injection
advisories keep coming from; every argument here is spelled out and validated.

Remote credentials are never stored: origin is the URL without userinfo, and a git process that
talks to the remote gets them at run time from the variable named by the project's
`remote_credentials_env` through a credential helper reading that process's environment.

The rooms: `errors` (what can go wrong), `masking` (credentials out of text), `names`
(validation before git sees a name), `process` (running git), `logformat` (the `git log`
records) and `workspace` (the clone and what relapp does with it). Callers import from here.
"""

from __future__ import annotations

from . import errors
from .errors import *  # every error is part of the package's surface: see errors.__all__
from .masking import mask, redact_url
from .names import is_sha, validate_ref_name, validate_remote_url, validate_revision
from .process import DEFAULT_TIMEOUT, git_call_count, on_git_call
from .workspace import FetchResult, Workspace, clone_to, fast_import, init_bare

__all__ = [
    "DEFAULT_TIMEOUT",
    "FetchResult",
    "Workspace",
    "clone_to",
    "fast_import",
    "git_call_count",
    "init_bare",
    "is_sha",
    "mask",
    "on_git_call",
    "redact_url",
    "validate_ref_name",
    "validate_remote_url",
    "validate_revision",
]
__all__ += errors.__all__
