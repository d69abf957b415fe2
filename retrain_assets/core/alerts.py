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
from dataclasses import dataclass

LOG = logging.getLogger("retrain_assets.alerts")


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

    A webhook that is down or refuses the alert never raises: the failure is logged and returned,
    so an alert cannot break the run or sensor that raised it.

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
    text = f"{title}: {details}"
    log.warning(f"ALERT {text}")
    if not webhook_url:
        return AlertOutcome(text, False, "no alerts.webhook_url configured: logged only")
    url = os.path.expandvars(webhook_url)
    body = json.dumps({"text": text}).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        log.error(f"alert webhook refused the alert: HTTP {error.code} {error.reason}")
        return AlertOutcome(text, False, f"HTTP {error.code}")
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        log.error(f"alert webhook unreachable: {error}")
        return AlertOutcome(text, False, f"unreachable: {error}")
    return AlertOutcome(text, 200 <= status < 300, f"HTTP {status}")
