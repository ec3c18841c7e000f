"""A whole gateway as a node: /health names the node, the nodes it sees and the leases it holds;
/metrics carries the cluster's metrics under the names the alert rules use."""
from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet import reactor

from gateway.config import load_config
from gateway.wiring import build_service
from tests.test_fail_fast import _busy_port


@pytest_twisted.inlineCallbacks
def test_health_and_metrics_of_a_node(migrated_url, tmp_path):
    sock, port = _busy_port()
    sock.close()                  # an Asterisk that does not answer: the AMI events lease is taken all the same
    cfg = load_config(None, {"gateway": {"database_url": migrated_url, "node_name": "yihu-east",
                                         "data_dir": str(tmp_path)},
                             "http": {"port": 0}, "ami": {"enabled": True, "port": port},
                             "ivr": {"enabled": True, "port": 0}})
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.started
        assert gw.node.name == "yihu-east" and gw.node.alive and gw.node.timeout_s == 15.0
        http = (yield gw.http_service.listening).getHost().port
        resp = yield treq.get(f"http://127.0.0.1:{http}/health")
        body = json.loads((yield resp.content()))
        checks = body["checks"]
        assert checks["node"]["ok"] and "yihu-east" in checks["node"]["detail"]
        assert "yihu-east alive" in checks["nodes"]["detail"]
        for lease in ("escalation-auditor", "event-retention", "call-token-retention", f"ami-events:127.0.0.1:{port}"):
            assert checks[f"lease {lease}"]["ok"], lease
            assert "held by this node (yihu-east" in checks[f"lease {lease}"]["detail"], checks[f"lease {lease}"]
        if not migrated_url.startswith("sqlite"):
            assert "wake-ups" in checks
        resp = yield treq.get(f"http://127.0.0.1:{http}/metrics")
        text = (yield resp.content()).decode()
        assert 'yihu_node_heartbeat_age_seconds{node="yihu-east"}' in text
        assert "yihu_nodes_alive " in text
        assert 'yihu_lease_held{lease="escalation-auditor"} 1.0' in text
        assert 'yihu_lease_changes_total{lease="escalation-auditor"}' in text
    finally:
        yield gw.stopService()
        gw.database.stop()
