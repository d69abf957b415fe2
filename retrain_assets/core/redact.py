"""Hide secrets in anything shown to a person: URLs with passwords, tokens in query strings, webhook paths.

Every URI or URL the platform puts in a log line, an error, event metadata or a resource description
goes through :func:`redact` first. Pure Python.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "***"

_SECRET_QUERY_KEYS = re.compile(r"(token|secret|password|passwd|pwd|key|sig|signature|auth|credential|code)", re.I)
# Webhook services that put the secret in the path: everything after the service's fixed prefix is hidden.
_SECRET_PATHS = (
    ("hooks.slack.com", "/services/"),
    ("hooks.slack.com", "/workflows/"),
    ("hooks.slack.com", "/triggers/"),
    ("discord.com", "/api/webhooks/"),
    ("discordapp.com", "/api/webhooks/"),
    ("webhook.office.com", "/webhookb2/"),
    ("outlook.office.com", "/webhook/"),
    ("chat.googleapis.com", "/v1/spaces/"),
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL with its password (``user:***@``), secret query values and webhook secret path hidden.

    Args:
        url: Any URL or URI (``https://...``, ``postgresql://user:pw@host/db``, ``sqlite:///path``).

    Returns:
        The same URL with secrets replaced by ``***``; a text that is not a URL is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{HIDDEN}@{host}" if ":" in userinfo else f"{HIDDEN}@{host}"
    path = parts.path
    host = (parts.hostname or "").lower()
    for service, prefix in _SECRET_PATHS:
        if (host == service or host.endswith("." + service)) and path.startswith(prefix):
            path = prefix + HIDDEN
            break
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, HIDDEN if _SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact(text: str) -> str:
    """Every URL inside a text redacted with :func:`redact_url` (for error messages and log lines)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), str(text))


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """An http(s) URL without its ``user:password@`` part, and the user and password it held.

    MLflow prints its tracking URI ("View run at ...") and stores it in places a person reads; its
    HTTP client takes credentials from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
    instead, so the platform hands them over that way and the URI it uses never holds them.

    Returns:
        (URL without credentials, user or None, password or None); other schemes come back unchanged.
    """
    from urllib.parse import unquote

    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) or None
