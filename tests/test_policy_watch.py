"""Hot reload: edits are noticed, invalid edits are reported and leave the policy in force."""

from __future__ import annotations

import os

from veil.policy import load_policy
from veil.policy_watch import PolicyWatcher

GOOD = "version: 1\nrules:\n  - {name: one, action: strip}\n"
OTHER = "version: 1\nrules:\n  - {name: two, action: block}\n"
BAD = "version: 1\nrules:\n  - {name: three, action: blokc}\n"


def touch_later(path, text: str) -> None:
    """Write and move the mtime forward, so the test does not depend on clock granularity."""
    before = os.stat(path).st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_nothing_changed_nothing_reported(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    watcher = PolicyWatcher(path, load_policy)
    assert watcher.poll() is None
    assert watcher.poll() is None


def test_a_valid_edit_comes_back_as_the_new_policy(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    watcher = PolicyWatcher(path, load_policy)
    touch_later(path, OTHER)
    result = watcher.poll()
    assert result is not None and result.error is None
    assert [r.name for r in result.policy.rules] == ["two"]
    assert watcher.poll() is None


def test_an_invalid_edit_is_reported_once_with_its_location(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    watcher = PolicyWatcher(path, load_policy)
    touch_later(path, BAD)
    result = watcher.poll()
    assert result is not None and result.policy is None
    assert f"{path}:3:27: unknown action (got 'blokc'" in result.error
    assert watcher.poll() is None  # reported once, not at every poll
    touch_later(path, GOOD)  # fixed: taken
    assert watcher.poll().policy is not None


def test_a_replaced_file_is_noticed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    watcher = PolicyWatcher(path, load_policy)
    new = tmp_path / "p.yaml.new"
    new.write_text(OTHER)
    os.utime(new, ns=(1, 1))  # even with an older mtime: editors rename a new file in place
    new.replace(path)
    assert [r.name for r in watcher.poll().policy.rules] == ["two"]


def test_a_deleted_file_is_reported_and_its_return_noticed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    watcher = PolicyWatcher(path, load_policy)
    path.unlink()
    assert "is gone" in watcher.poll().error
    assert watcher.poll() is None
    path.write_text(OTHER)
    assert watcher.poll().policy is not None


def test_a_load_that_crashes_is_an_error_not_an_exception(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)

    def explode(_):
        raise RuntimeError("boom")

    watcher = PolicyWatcher(path, explode)
    touch_later(path, OTHER)
    assert "RuntimeError: boom" in watcher.poll().error


def test_a_reloaded_max_upload_moves_the_buffered_body_bound_both_ways(tmp_path):
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.test import taddons
    from veil.addon import BODY_LIMIT_FACTOR, Veil

    def policy(size: str):
        path = tmp_path / f"{size}.yaml"
        path.write_text(f"version: 1\nsettings: {{max_upload: {size}}}\n")
        return load_policy(path)

    veil = Veil()
    first = tmp_path / "first.yaml"
    first.write_text("version: 1\nsettings: {max_upload: 1MiB}\n")
    with taddons.context(Proxyserver(), veil) as tctx:
        tctx.configure(veil, veil_policy=str(first), veil_audit=str(tmp_path / "audit"))
        assert tctx.options.body_size_limit == str(2**20 * BODY_LIMIT_FACTOR)
        for size, expected in (("4MiB", 4 * 2**20), ("512KiB", 2**19)):
            veil._policy = policy(size)
            veil._bound_buffered_bodies()
            assert tctx.options.body_size_limit == str(expected * BODY_LIMIT_FACTOR)
        veil.done()
