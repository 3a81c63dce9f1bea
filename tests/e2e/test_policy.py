"""The policy through a real proxy: block, strip, warn and coach on the wire, per service and
per authenticated user or group, refusals as JSON or HTML, and hot reload of the policy file.

Face detection plays no part here (the policies below never mention faces), so these tests
hold whatever detector is installed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import ssl

import httpx
import pytest
from PIL import Image
from veil.answer import decode_notice

from tests.conftest import corpus_file

from .conftest import Proxy, wait_for

pytestmark = pytest.mark.e2e

GPS_JPEG = "es_nikon_p6000_gps_DSCN0010.jpg"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
WARNING = "Photo sent without its metadata — métadonnées supprimées."

POLICY = f"""\
version: 1
settings:
  coach_ttl: 10m
groups:
  interns: [alice]
rules:
  - name: no-uploads-to-claude
    match: {{services: [claude]}}
    action: block
    message: Uploads to Claude are not allowed here.
  - name: interns-no-gps-to-chatgpt
    match: {{services: [chatgpt], groups: [interns], has: [gps]}}
    action: block
    message: Interns may not send photos with a location to ChatGPT.
  - name: carol-copilot-coached
    match: {{services: [copilot], users: [carol]}}
    action: [strip, coach]
    message: Think twice before sending photos to Copilot.
  - name: warn-openai-api
    match: {{services: [openai-api]}}
    action: [strip, warn]
    message: {WARNING}
  - name: strip-everywhere
    action: strip
"""

CLAUDE_UPLOAD = "https://claude.ai/api/organizations/o1/conversations/c1/wiggle/upload-file"
CHATGPT_UPLOAD = "https://chatgpt.com/backend-api/files"
COPILOT_UPLOAD = "https://copilot.microsoft.com/c/api/attachments"
OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
BROWSER_NAVIGATION = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
    "sec-fetch-site": "same-origin",
}
BROWSER_FETCH = {"accept": "*/*", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"}


def has_gps(jpeg: bytes) -> bool:
    return bool(Image.open(io.BytesIO(jpeg)).getexif().get_ifd(0x8825))


def htpasswd(path) -> str:
    lines = []
    for user, password in PASSWORDS.items():
        digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        lines.append(f"{user}:{{SHA}}{digest}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def client_as(proxy: Proxy, user: str, **kwargs) -> httpx.Client:
    """A client that authenticates to the proxy as `user` (HTTP Basic, at CONNECT)."""
    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    url = proxy.url.replace("http://", f"http://{user}:{PASSWORDS[user]}@")
    return httpx.Client(proxy=url, verify=context, timeout=60, **kwargs)


def record_for(proxy: Proxy, decision_id: str) -> dict:
    matches = [r for r in proxy.records() if r["decision_id"] == decision_id]
    assert len(matches) == 1, f"no single audit record {decision_id}"
    return matches[0]


@pytest.fixture
def photo() -> bytes:
    data = corpus_file(GPS_JPEG).read_bytes()
    assert has_gps(data)
    return data


@pytest.fixture(scope="module")
def authed_proxy(start_module_proxy, tmp_path_factory) -> Proxy:
    """One proxy for the tests below: users from an htpasswd file, the policy above."""
    users = htpasswd(tmp_path_factory.mktemp("auth") / "htpasswd")
    return start_module_proxy(POLICY, args=["--proxyauth", f"@{users}"])


def test_block_refuses_with_the_message_as_json_or_html_and_nothing_leaves(
    authed_proxy, upstream, photo
):
    files = {"file": ("photo.jpg", photo, "image/jpeg")}
    with client_as(authed_proxy, "bob") as client:
        api = client.post(CLAUDE_UPLOAD, files=files)
        fetch = client.post(CLAUDE_UPLOAD, files=files, headers=BROWSER_FETCH)
        page = client.post(CLAUDE_UPLOAD, files=files, headers=BROWSER_NAVIGATION)
    assert upstream.received == []

    for response in (api, fetch):
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["type"] == "upload_blocked"
        assert error["message"] == "Uploads to Claude are not allowed here."
        assert error["rule"] == "no-uploads-to-claude"
        record = record_for(authed_proxy, error["decision_id"])
        assert record["rule"] == "no-uploads-to-claude"
        assert record["verdict"] == "blocked"
        assert record["user"] == "bob"
        assert record["service"] == "claude"

    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "Uploads to Claude are not allowed here." in page.text
    assert "no-uploads-to-claude" in page.text
    assert authed_proxy.last_record()["verdict"] == "blocked"


def test_another_service_under_strip_passes_stripped(authed_proxy, upstream, photo):
    with client_as(authed_proxy, "bob") as client:
        response = client.post(CHATGPT_UPLOAD, files={"file": ("photo.jpg", photo, "image/jpeg")})
    assert response.status_code == 200
    arrived = upstream.last()
    image = arrived.part("file")
    assert image.startswith(b"\xff\xd8") and not has_gps(image)
    assert "veil-notice" not in response.headers
    record = authed_proxy.last_record()
    assert (record["rule"], record["verdict"]) == ("strip-everywhere", "transformed")
    assert record["user"] == "bob"


def test_a_group_rule_applies_only_to_its_members(authed_proxy, upstream, photo):
    files = {"file": ("photo.jpg", photo, "image/jpeg")}
    with client_as(authed_proxy, "alice") as alice:
        refused = alice.post(CHATGPT_UPLOAD, files=files)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "Interns may not send photos with a location to ChatGPT."
    )
    assert upstream.received == []
    record = authed_proxy.last_record()
    assert (record["user"], record["rule"], record["verdict"]) == (
        "alice",
        "interns-no-gps-to-chatgpt",
        "blocked",
    )

    with client_as(authed_proxy, "carol") as carol:  # not an intern
        passed = carol.post(CHATGPT_UPLOAD, files=files)
    assert passed.status_code == 200
    assert len(upstream.received) == 1
    record = authed_proxy.last_record()
    assert (record["user"], record["rule"], record["verdict"]) == (
        "carol",
        "strip-everywhere",
        "transformed",
    )


def test_warn_passes_the_transformed_upload_with_a_notice_header(authed_proxy, upstream, photo):
    data_url = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this photo?"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        ],
    }
    with client_as(authed_proxy, "alice") as client:
        response = client.post(OPENAI_CHAT, json=body)
    assert response.status_code == 200
    assert response.json()["ok"] is True  # the service's own answer
    notice = response.headers["veil-notice"]
    assert notice.isascii() and notice.startswith("UTF-8''")
    assert decode_notice(notice) == WARNING
    sent = json.loads(upstream.last().body)
    url = sent["messages"][0]["content"][1]["image_url"]["url"]
    image = base64.b64decode(url.split(",", 1)[1])
    assert image.startswith(b"\xff\xd8") and not has_gps(image)
    record = authed_proxy.last_record()
    assert (record["rule"], record["verdict"]) == ("warn-openai-api", "warned")
    assert record["message"] == WARNING


def test_coach_refuses_then_the_continue_link_lets_that_user_through(authed_proxy, upstream, photo):
    upload = {"content": photo, "headers": {"content-type": "image/jpeg"}}
    with client_as(authed_proxy, "carol") as carol:
        coached = carol.post(COPILOT_UPLOAD, **upload)
    assert coached.status_code == 403
    error = coached.json()["error"]
    assert error["type"] == "upload_coached"
    assert error["rule"] == "carol-copilot-coached"
    assert error["message"].startswith("Think twice before sending photos to Copilot.")
    continue_url = error["continue_url"]
    assert continue_url.startswith("https://copilot.microsoft.com/__veil/coach/continue?t=")
    assert continue_url in error["message"]  # SDKs show only the message
    assert upstream.received == []
    coached_record = record_for(authed_proxy, error["decision_id"])
    assert (coached_record["rule"], coached_record["verdict"]) == (
        "carol-copilot-coached",
        "coached",
    )

    with client_as(authed_proxy, "bob") as bob:  # someone else's link does nothing
        stolen = bob.get(continue_url)
    assert stolen.status_code == 403
    assert stolen.json()["error"]["type"] == "coach_link_invalid"

    with client_as(authed_proxy, "carol") as carol:
        page = carol.get(continue_url, headers=BROWSER_NAVIGATION)
        assert page.status_code == 200
        assert "uploads to copilot are let through until" in page.text
        passed = carol.post(COPILOT_UPLOAD, **upload)
    assert upstream.received and all("__veil" not in p for p in upstream.paths())
    assert passed.status_code == 200
    arrived = upstream.last()
    assert arrived.path == "/c/api/attachments"
    assert arrived.body.startswith(b"\xff\xd8") and not has_gps(arrived.body)

    acknowledgement, passed_record = authed_proxy.records()[-2:]
    assert acknowledgement["event"] == "coach_acknowledged"
    assert acknowledgement["user"] == "carol"
    assert acknowledgement["coached_decision"] == error["decision_id"]
    assert acknowledgement["path"] == "/__veil/coach/continue"  # the token is not recorded
    assert (passed_record["rule"], passed_record["verdict"]) == (
        "carol-copilot-coached",
        "transformed",
    )
    assert passed_record["actions"] == ["strip"]
    assert passed_record["acknowledged"] == acknowledgement["decision_id"]

    with client_as(authed_proxy, "bob") as bob:  # bob was never coached: strip-everywhere
        assert bob.post(COPILOT_UPLOAD, **upload).status_code == 200
    assert authed_proxy.last_record()["rule"] == "strip-everywhere"


RELOAD_BEFORE = """\
version: 1
rules:
  - name: alice-blocked
    match: {users: [alice]}
    action: block
  - name: strip-everywhere
    action: strip
"""
RELOAD_AFTER = """\
version: 1
rules:
  - name: no-chatgpt
    match: {services: [chatgpt]}
    action: block
    message: ChatGPT uploads are switched off.
  - name: strip-everywhere
    action: strip
"""
RELOAD_INVALID = RELOAD_AFTER.replace("action: block", "action: blokc")


def test_policy_edits_take_effect_and_invalid_edits_keep_the_old_policy(
    start_proxy, upstream, photo
):
    proxy = start_proxy(RELOAD_BEFORE, mitm_args=["--set", "veil_policy_poll_ms=200"])
    assert proxy.policy is not None
    files = {"file": ("photo.jpg", photo, "image/jpeg")}

    def upload() -> httpx.Response:
        with proxy.client() as client:
            return client.post(CHATGPT_UPLOAD, files=files)

    # Unauthenticated traffic never matches a rule that names users.
    assert upload().status_code == 200
    assert proxy.last_record()["rule"] == "strip-everywhere"
    assert proxy.last_record()["user"] is None

    proxy.policy.write_text(RELOAD_AFTER)
    assert wait_for(lambda: "policy reloaded" in proxy.log()), proxy.log()
    blocked = upload()
    assert blocked.status_code == 403
    assert blocked.json()["error"]["message"] == "ChatGPT uploads are switched off."
    assert proxy.last_record()["rule"] == "no-chatgpt"
    received = len(upstream.received)

    proxy.policy.write_text(RELOAD_INVALID)
    assert wait_for(lambda: "policy edit rejected" in proxy.log()), proxy.log()
    location = f"{proxy.policy}:5:13: unknown action (got 'blokc'"
    assert location in proxy.log()
    failure = proxy.last_record()
    assert failure["event"] == "policy_reload_failed"
    assert failure["verdict"] == "error"
    assert location in failure["message"]
    assert failure["images"] == []

    still = upload()  # the previous policy stays in force
    assert still.status_code == 403
    assert proxy.last_record()["rule"] == "no-chatgpt"
    assert len(upstream.received) == received


def test_veil_run_refuses_to_start_on_an_invalid_policy(start_proxy, tmp_path):
    policy = tmp_path / "broken.yaml"
    policy.write_text(RELOAD_INVALID)
    with pytest.raises(AssertionError) as failure:
        start_proxy(policy)
    assert "the policy is invalid, not starting" in str(failure.value)
    assert f"{policy}:5:13: unknown action (got 'blokc'" in str(failure.value)
