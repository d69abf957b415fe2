"""Alerts: one sentence to a Slack-compatible incoming webhook, always also logged. No Dagster.

The payload is ``{"text": "<title>: <details>"}``, which Slack, Mattermost, Rocket.Chat and
Microsoft Teams' incoming webhooks (and most chat bridges) accept.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from retrain_assets.core.redact import redact, redact_url

LOG = logging.getLogger("retrain_assets.alerts")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def unset_variables(text: str) -> list[str]:
    """Names of the ``$VAR`` / ``${VAR}`` a text refers to that are not set (or empty) here."""
    names = [a or b for a, b in _VARIABLE.findall(text)]
    return [name for name in dict.fromkeys(names) if not os.environ.get(name)]


def webhook_problem(url: str) -> str | None:
    """Why an (expanded) webhook URL cannot be posted to, in words that never show its secret; None if fine."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"must be an http(s) URL such as https://hooks.slack.com/services/...; it has {shown}"
    if not host:
        return "has no host name (write it as https://host/path)"
    return None


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to one alert.

    Attributes:
        text: The message.
        sent: Whether the webhook accepted it (2xx).
        detail: The HTTP status, or why it was not sent.
    """

    text: str
    sent: bool
    detail: str


def send_alert(title: str, details: str, *, webhook_url: str | None, timeout_seconds: float = 10.0,
               logger: logging.Logger | None = None) -> AlertOutcome:
    """Log an alert and POST it to the webhook, if one is configured.

    A webhook that is down, refuses the alert, is misconfigured or names an unset ``$VAR`` never
    raises: the failure is logged (the URL's secret hidden) and returned, so an alert cannot break
    the run or sensor tick that raised it.

    Args:
        title: Short headline, e.g. ``"retrain-assets: promotion blocked"``.
        details: The sentence with the numbers.
        webhook_url: The URL (``$VARS`` expanded), or None to log only.
        timeout_seconds: HTTP timeout.
        logger: Where to log (default: this module's logger).

    Returns:
        The outcome.
    """
    log = logger or LOG
    text = redact(f"{title}: {details}")
    log.warning(f"ALERT {text}")
    if not webhook_url:
        return AlertOutcome(text, False, "no alerts.webhook_url configured: logged only")
    missing = unset_variables(webhook_url)
    if missing:  # checked when the config loads too; the environment of this process may differ
        detail = f"alerts.webhook_url refers to ${missing[0]}, which is not set in this process's environment"
        log.error(f"alert not sent: {detail}")
        return AlertOutcome(text, False, detail)
    url = os.path.expandvars(webhook_url)
    problem = webhook_problem(url)
    if problem:
        log.error(f"alert not sent: alerts.webhook_url {problem}")
        return AlertOutcome(text, False, f"alerts.webhook_url {problem}")
    body = json.dumps({"text": text}).encode("utf-8")
    try:
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        log.error(f"alert webhook {redact_url(url)} refused the alert: HTTP {error.code} {error.reason}")
        return AlertOutcome(text, False, f"HTTP {error.code}")
    except Exception as error:  # an alert never fails the run or tick that raised it; logged, secret hidden
        reason = redact(f"{type(error).__name__}: {error}").replace(url, redact_url(url))
        log.error(f"alert webhook {redact_url(url)} unreachable: {reason}")
        return AlertOutcome(text, False, f"unreachable: {reason}")
    return AlertOutcome(text, 200 <= status < 300, f"HTTP {status}")
