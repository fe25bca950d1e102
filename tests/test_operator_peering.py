"""The operator's own resync pauses when kopf's peering shows a live higher-priority replica."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from logdistill.operator import handlers, scheduling
from logdistill.operator.context import Context
from logdistill.operator.manifests import common


class FakeCustom:
    def __init__(self, status):
        self.status = status
        self.listed = 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, plural, name) == ("kopf.dev", "kopfpeerings", "logdistill")
        return {"status": self.status}

    def list_namespaced_custom_object(self, *args):
        self.listed += 1
        return {"items": []}


def ctx(priority):
    return Context(api=None, images=common.Images("j", "e"), namespaces=("ns",), peering="logdistill",
                   priority=priority)


def peer(priority, age_s, lifetime=60):
    seen = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_outranked_only_by_a_live_higher_priority_peer(monkeypatch):
    cases = [
        ({"me": peer(10, 1)}, False),
        ({"me": peer(10, 1), "other": peer(5, 1)}, False),
        ({"me": peer(10, 1), "other": peer(20, 1)}, True),
        ({"me": peer(10, 1), "other": peer(20, 300)}, False),  # dead
    ]
    for status, expected in cases:
        fake = FakeCustom(status)
        monkeypatch.setattr(scheduling.client, "CustomObjectsApi", lambda api, fake=fake: fake)
        assert scheduling.outranked(ctx(10)) is expected, status
        scheduling.resync_once(ctx(10), handlers.reconcile)
        assert fake.listed == (0 if expected else 1)


def test_standalone_is_never_outranked():
    standalone = Context(api=None, images=common.Images("j", "e"))
    assert scheduling.outranked(standalone) is False
