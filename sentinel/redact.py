"""Secrets out of every text sentinel writes: terminals, logs, the state, messages.

The process learns its secrets as its notifiers are built and used (:func:`remember`,
:func:`remember_env`): a Slack token or incoming-webhook URL, a ``token_file``'s contents,
a webhook URL and the ``${VAR}`` values of its headers. :func:`scrub` replaces in any text

- every known secret value with :data:`REDACTED` (also each line of a value that has
  several, and the userinfo and query parts of a secret URL),
- anything shaped like a Slack token (``xoxb-...``) or an incoming-webhook URL,
- the userinfo and the query of every URL (:func:`url`: ``https://***@host/path?***``).

:func:`hook_environment` is the environment a hook runs with: sentinel's own, without the
variables that hold its secrets unless a rule passes them by name.

The known values are published as an immutable snapshot, replaced whole under a lock: any
thread may scrub while another remembers. Values shorter than :data:`MIN_SECRET` characters
are not remembered: they would blank ordinary words, and secure nothing.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
"""What a known secret, a Slack token or an incoming-webhook URL is replaced with."""
HIDDEN = "***"
"""What the userinfo, the query or the fragment of a URL is replaced with."""
MIN_SECRET = 4

_TOKEN = re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+")
_SLACK_HOOK = re.compile(
    r"(?:https?://)?[^\s\"'<>|]*/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[^\s\"'<>|]+"
    r"|(?:https?://)?hooks\.slack(?:-gov)?\.com/[^\s\"'<>|]+"
)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s\"'<>|`]+")
_SLACK_ENV_PREFIX = "SLACK_"

_lock = threading.Lock()
_values: tuple[str, ...] = ()
"""Known secret values, longest first (so that a value containing another goes first)."""
_names: frozenset[str] = frozenset()
"""Environment variables that hold secrets."""


def _pieces(value: str) -> set[str]:
    """``value`` and the parts of it that may show up alone in a message: its stripped
    text, each line, and for a URL its password, userinfo, query and the URL before it."""
    lines = [line.strip() for line in value.splitlines()]
    out = {value, value.strip(), *lines}
    for word in lines:
        try:
            parts = urllib.parse.urlsplit(word)
        except ValueError:
            continue
        if parts.scheme and parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            out.update({userinfo, parts.password or "", parts.query, parts.fragment})
            out.update(v for _, v in urllib.parse.parse_qsl(parts.query))
            if userinfo or parts.query:
                out.add(word.split("?", 1)[0].split("#", 1)[0])
    return {p for p in out if len(p) >= MIN_SECRET}


def remember(*values: str | None) -> None:
    """Treat these values (and their parts, see the module) as secrets from now on."""
    global _values
    new: set[str] = set()
    for value in values:
        if value:
            new |= _pieces(value)
    with _lock:
        if new <= set(_values):
            return
        _values = tuple(sorted(set(_values) | new, key=lambda v: (-len(v), v)))


def remember_env(names: Iterable[str], environ: Mapping[str, str]) -> None:
    """The variables ``names`` hold secrets: keep them from hooks and remember their values."""
    global _names
    names = {n for n in names if n}
    with _lock:
        _names = _names | names
    remember(*(environ.get(n) for n in names))


def secret_names() -> frozenset[str]:
    """The environment variables known to hold secrets."""
    return _names


def url(text: str) -> str:
    """``text`` as a URL safe to show: scheme, host, port and path; the userinfo, the query
    and the fragment replaced with :data:`HIDDEN`. Something that does not parse as a URL
    is shown as :data:`REDACTED`."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return REDACTED
    if not parts.scheme or not parts.netloc:
        return REDACTED
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        shown += "?" + HIDDEN
    if parts.fragment:
        shown += "#" + HIDDEN
    return shown


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` without any known secret nor ``secrets``, nor anything shaped like a Slack
    token or an incoming-webhook URL, and with every URL shown by :func:`url`."""
    extra: set[str] = set()
    for secret in secrets:
        if secret:
            extra |= _pieces(secret)
    known = sorted(extra, key=len, reverse=True) + list(_values) if extra else _values
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    text = _SLACK_HOOK.sub(REDACTED, text)
    text = _TOKEN.sub(REDACTED, text)
    return _URL.sub(lambda m: _url_in_text(m.group(0)), text)


def _url_in_text(found: str) -> str:
    trail = ""
    while found and found[-1] in ".,;:)]}":  # sentence punctuation after a URL
        trail = found[-1] + trail
        found = found[:-1]
    try:
        parts = urllib.parse.urlsplit(found)
    except ValueError:
        return REDACTED + trail
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return found + trail
    return url(found) + trail


def is_secret_variable(name: str, value: str, values: Iterable[str] = ()) -> bool:
    """Whether environment variable ``name`` (holding ``value``) is one of sentinel's secrets:
    named by a notifier, a ``SLACK_*`` variable, or holding a token or a known secret."""
    if name in _names or name.startswith(_SLACK_ENV_PREFIX):
        return True
    if _TOKEN.search(value) or _SLACK_HOOK.search(value):
        return True
    return any(v in value for v in values)


def hook_environment(environ: Mapping[str, str], passed: Iterable[str] = ()) -> dict[str, str]:
    """``environ`` without sentinel's secrets (:func:`is_secret_variable`), except the
    variables named in ``passed``, which a rule hands to its hook on purpose."""
    keep = set(passed)
    values = _values
    return {k: v for k, v in environ.items() if k in keep or not is_secret_variable(k, v, values)}
