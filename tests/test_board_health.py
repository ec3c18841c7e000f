"""The wall's health chips are what /health reports (gateway/health.py): the node as a whole,
every modem, the AMI link, and any other part only when it is down."""
from adapters.board import health_chips
from gateway.health import PartHealth, off


def test_every_modem_and_the_ami_link_and_a_part_that_is_down():
    parts = [PartHealth("database", True, "ok"), PartHealth("sms", True, "1/2 modems usable"),
             PartHealth("modem ttyUSB0", True, "ready -71dBm", essential=False),
             PartHealth("modem ttyUSB1", False, "benched (SIM PIN refused)", essential=False),
             PartHealth("ami", True, "logged in"), PartHealth("fan-out", True, "")]
    chips = health_chips(parts, "node-a")
    # One modem of two down: the node is degraded (amber), not down; the modem itself is red.
    assert [(name, cls) for name, cls, _ in chips] == [
        ("node-a", "warn"), ("短信猫1", "ok"), ("短信猫2", "bad"), ("AMI", "ok")]
    assert "benched (SIM PIN refused)" in chips[2][2] and "1/2 modems usable" in chips[0][2]

    down = health_chips([PartHealth("database", False, "unreachable"), off("ami", "ami.enabled = false")], "")
    assert [(name, cls) for name, cls, _ in down] == [("本节点", "bad"), ("数据库", "bad"), ("AMI", "off")]
