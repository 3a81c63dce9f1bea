"""Answers from the proxy: JSON for API clients and fetch, HTML for navigations; the notice
header survives any script."""

from __future__ import annotations

import json

import h11
import pytest
from veil.answer import (
    acknowledged,
    coaching,
    decode_notice,
    notice_header,
    refusal,
    wants_html,
)

BROWSER_NAVIGATION = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
}
BROWSER_FETCH = {"accept": "*/*", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"}


@pytest.mark.parametrize(
    ("headers", "html"),
    [
        (BROWSER_NAVIGATION, True),
        ({"sec-fetch-mode": "navigate"}, True),
        ({"sec-fetch-dest": "iframe", "sec-fetch-mode": "navigate"}, True),
        (BROWSER_FETCH, False),
        ({"accept": "text/html", "sec-fetch-mode": "cors"}, False),  # fetch() asking for HTML
        ({"sec-fetch-mode": "no-cors"}, False),
        ({}, False),  # scripts, SDKs
        ({"accept": "*/*"}, False),  # curl
        ({"accept": "application/json"}, False),
        ({"accept": "text/html"}, True),  # an old browser without Sec-Fetch-*
        ({"accept": "text/html, application/json"}, False),
    ],
)
def test_who_gets_a_page(headers, html):
    assert wants_html(headers) is html


def test_block_as_json_names_type_message_rule_and_decision():
    answer = refusal(403, "upload_blocked", "No GPS to Gemini.", "d-1", BROWSER_FETCH, rule="r")
    assert answer.status == 403
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(answer.body) == {
        "error": {
            "type": "upload_blocked",
            "message": "No GPS to Gemini.",
            "rule": "r",
            "decision_id": "d-1",
        }
    }


def test_block_as_html_is_short_readable_and_escaped():
    answer = refusal(
        403, "upload_blocked", "No <GPS> to Gemini.", "d-1", BROWSER_NAVIGATION, rule="no-gps"
    )
    page = answer.body.decode()
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>Upload stopped</h1>" in page
    assert "No &lt;GPS&gt; to Gemini." in page
    assert "no-gps" in page and "d-1" in page
    assert len(page) < 2000


def test_coaching_carries_the_continue_link():
    url = "https://claude.ai/__veil/coach/continue?t=abc"
    kwargs = dict(rule="think", service="claude", continue_url=url, ttl=1800)
    api = coaching("Think first.", "d-2", BROWSER_FETCH, **kwargs)
    error = json.loads(api.body)["error"]
    assert api.status == 403
    assert error["type"] == "upload_coached"
    assert error["continue_url"] == url
    assert error["message"].startswith("Think first.")
    assert "30 minutes" in error["message"] and url in error["message"]
    page = coaching("Think first.", "d-2", BROWSER_NAVIGATION, **kwargs).body.decode()
    assert f'href="{url}"' in page
    assert "I understand, continue" in page


def test_acknowledged_says_until_when():
    api = acknowledged("claude", 0, "d-3", {})
    body = json.loads(api.body)["acknowledged"]
    assert api.status == 200
    assert body["until"] == "1970-01-01T00:00:00+00:00"
    assert body["decision_id"] == "d-3"
    assert "00:00 UTC" in acknowledged("claude", 0, "d-3", BROWSER_NAVIGATION).body.decode()


@pytest.mark.parametrize(
    "message",
    [
        "Faces were found.",
        "Des visages ont été détectés — merci de vérifier.",
        "写真に顔が写っています",
        "Emoji 📷 and\nnew lines\r\nand\ttabs",
        "UTF-8''looks encoded already",
        '100% sure; a=b, "quoted"',
    ],
)
def test_notice_header_is_a_valid_header_and_round_trips(message):
    value = notice_header(message)
    assert value.isascii()
    # h11 is what mitmproxy's HTTP/1 stack is checked against: it must accept the value.
    h11.Response(status_code=200, headers=[("Veil-Notice", value.encode("ascii"))])
    assert decode_notice(value) == " ".join(message.split())


def test_plain_ascii_notice_is_sent_as_is():
    assert notice_header("Faces were found.") == "Faces were found."
    assert notice_header("été").startswith("UTF-8''")
    assert notice_header("x" * 2000) == "x" * 512
