"""Secrets hidden in URLs shown to people."""

import pytest

from retrain_assets.core.redact import redact, redact_url, split_credentials


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pa55@mlflow.example.com:5000/x", "https://user:***@mlflow.example.com:5000/x"),
        ("postgresql://u:p@db:5432/mlflow", "postgresql://u:***@db:5432/mlflow"),
        ("https://token@host/", "https://***@host/"),
        ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/services/***"),
        ("https://discord.com/api/webhooks/1/abc", "https://discord.com/api/webhooks/***"),
        ("https://x.webhook.office.com/webhookb2/abc@def/IncomingWebhook/g/h", "https://x.webhook.office.com/webhookb2/***"),
        ("http://h/hook?token=abc&channel=ops", "http://h/hook?token=***&channel=ops"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_finds_urls_inside_text():
    text = "<urlopen error [Errno 111] for 'https://a:b@h/x?sig=1'> and http://plain/"
    assert redact(text) == "<urlopen error [Errno 111] for 'https://a:***@h/x?sig=***'> and http://plain/"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:p%40ss@mlflow:5000/", ("https://mlflow:5000/", "alice", "p@ss")),
        ("http://127.0.0.1:5000", ("http://127.0.0.1:5000", None, None)),
        ("postgresql://u:p@db/x", ("postgresql://u:p@db/x", None, None)),
    ],
)
def test_split_credentials(url, expected):
    assert split_credentials(url) == expected
