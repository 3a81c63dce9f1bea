"""The service catalogue: host patterns, shared hosts, endpoints that declared their size."""

from __future__ import annotations

import pytest
from veil.catalogue import Catalogue, CatalogueError, compile_host_pattern
from veil.cli.pac import render


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("chatgpt.com", "chatgpt.com", True),
        ("chatgpt.com", "evilchatgpt.com", False),
        ("chatgpt.com", "chatgpt.com.evil.net", False),
        ("*.oaiusercontent.com", "sdmntprwestus.oaiusercontent.com", True),
        ("*.oaiusercontent.com", "a.b.oaiusercontent.com", True),
        ("*.oaiusercontent.com", "oaiusercontent.com", False),
        ("*.oaiusercontent.com", "x.oaiusercontent.com.evil.net", False),
        ("*-aiplatform.googleapis.com", "us-central1-aiplatform.googleapis.com", True),
        ("*-aiplatform.googleapis.com", "evil.net/-aiplatform.googleapis.com", False),
        ("*-aiplatform.googleapis.com", "a.b-aiplatform.googleapis.com", False),
    ],
)
def test_host_patterns(pattern, host, matches):
    assert bool(compile_host_pattern(pattern).match(host)) is matches


def test_the_issue_s_services_are_all_in_the_built_in_catalogue(catalogue):
    hosts = {
        "chatgpt": ["chatgpt.com", "chat.openai.com", "files.oaiusercontent.com"],
        "claude": ["claude.ai"],
        "gemini": ["gemini.google.com", "content-push.googleapis.com", "push.clients6.google.com"],
        "gemini-api": ["generativelanguage.googleapis.com", "aiplatform.googleapis.com"],
        "copilot": ["copilot.microsoft.com"],
        "openai-api": ["api.openai.com"],
        "anthropic-api": ["api.anthropic.com"],
        "perplexity": ["www.perplexity.ai"],
        "grok": ["grok.com"],
        "deepseek": ["chat.deepseek.com"],
        "mistral": ["chat.mistral.ai"],
        "meta-ai": ["www.meta.ai", "rupload.meta.ai"],
        "poe": ["poe.com"],
        "huggingchat": ["huggingface.co"],
    }
    for service, names in hosts.items():
        for host in names:
            found = catalogue.service_for_host(host.upper() + ".")  # case and root dot
            assert found is not None and found.id == service, host


def test_other_hosts_are_not_ai_services(catalogue):
    for host in ("example.org", "google.com", "openai.com", "huggingface.co.evil.net"):
        assert catalogue.service_for_host(host) is None


def test_a_shared_host_belongs_to_the_service_only_on_its_paths(catalogue):
    assert catalogue.match("POST", "huggingface.co", "/chat/conversation/abc") is not None
    assert catalogue.match("PUT", "huggingface.co", "/api/datasets/x/upload") is None


def test_endpoints_say_when_the_size_was_announced_before_the_bytes(catalogue):
    put = catalogue.match("PUT", "sdmntprwestus.oaiusercontent.com", "/files/abc/raw?sig=x")
    assert put is not None and put.size_declared
    files = catalogue.match("POST", "chatgpt.com", "/backend-api/files")
    assert files is not None and not files.size_declared
    resumable = catalogue.match("POST", "content-push.googleapis.com", "/upload/?upload_id=1")
    assert resumable is not None and resumable.size_declared


def test_vendors_group_services(catalogue):
    assert {"chatgpt", "openai-api"} <= set(catalogue.vendors["openai"])
    assert {"gemini", "gemini-api"} <= set(catalogue.vendors["google"])


def test_malformed_catalogues_are_refused_with_the_file_named():
    with pytest.raises(CatalogueError, match=r"x\.yaml: service 'a' needs a list of hosts"):
        Catalogue.from_document({"services": {"a": {"name": "A"}}}, "x.yaml")
    with pytest.raises(CatalogueError, match="bad endpoint"):
        Catalogue.from_document(
            {"services": {"a": {"hosts": ["a.example"], "endpoints": [{"path": "("}]}}}, "x.yaml"
        )


def test_pac_sends_only_catalogue_hosts_to_the_proxy(catalogue):
    pac = render(catalogue, "veil.corp:3128")
    assert '"*.oaiusercontent.com"' in pac and '"api.anthropic.com"' in pac
    assert pac.count("PROXY veil.corp:3128") == 1
    assert "DIRECT" in pac.split("PROXY veil.corp:3128")[1]  # only after the AI branch
