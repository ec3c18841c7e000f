"""CAP 1.2 documents against the OASIS schema: the specification's own examples are accepted, and
every refusal names the element and says what is wrong."""
from pathlib import Path

import pytest

from gateway.cap.document import CapRefused, order_text, parse

HERE = Path(__file__).resolve().parent / "cap"
OASIS = ["cap_homeland_security.xml", "cap_thunderstorm.xml", "cap_earthquake.xml", "cap_amber.xml"]


def raw(name: str) -> bytes:
    return (HERE / name).read_bytes()


def refused(data: bytes, **limits) -> CapRefused:
    with pytest.raises(CapRefused) as e:
        parse(data, **limits)
    return e.value


@pytest.mark.parametrize("name", OASIS)
def test_the_specifications_examples_are_accepted(name):
    _root, alert = parse(raw(name))
    assert alert.identifier and alert.sender and alert.sent and alert.info is not None


def test_what_is_read_from_the_examples():
    _r, storm = parse(raw("cap_thunderstorm.xml"))
    assert storm.key == "KSTO@NWS.NOAA.GOV,KSTO1055887203,2003-06-17T14:57:00-07:00"
    assert storm.info.categories == ("Met",) and storm.info.severity == "Severe"
    assert storm.info.geocodes == (("SAME", "006109"), ("SAME", "006009"), ("SAME", "006003"))
    _r, quake = parse(raw("cap_earthquake.xml"))
    assert quake.msg_type == "Update"
    assert quake.references == ("trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00",)
    _r, amber = parse(raw("cap_amber.xml"))
    assert amber.languages == ("en-US", "es-US") and amber.info.language == "en-US"   # no zh-CN: the first
    _r, rain = parse(raw("zh_rainstorm_alert.xml"))
    assert rain.info.language == "zh-CN" and rain.info.event == "暴雨"                 # zh-CN chosen over en-US


@pytest.mark.parametrize("name, old, new, element, words", [
    # CAP 1.2 times carry an offset; "Z" is not allowed (section 3.3.2)
    ("cap_thunderstorm.xml", b"14:57:00-07:00</sent>", b"14:57:00Z</sent>", "/alert/sent", "pattern"),
    ("cap_homeland_security.xml", b"<identifier>43b080713727</identifier>", b"", "/alert/sender",
     "Expected is ( identifier )"),
    ("cap_earthquake.xml", b"<severity>Minor</severity>", b"<severity>Tiny</severity>", "/alert/info/severity",
     "'Tiny' is not an element of the set"),
    ("cap_amber.xml", "<category>Rescue</category>\n    <event>Abducción".encode(),
     "<category>Kidnap</category>\n    <event>Abducción".encode(), "/alert/info[2]/category", "'Kidnap'"),
    ("cap_thunderstorm.xml", b"<msgType>Alert</msgType>", b"<msgType>Warning</msgType>", "/alert/msgType",
     "'Warning'"),
    ("cap_amber.xml", b"<areaDesc>Los Angeles County</areaDesc>", b"", "/alert/info[1]/area/geocode",
     "Expected is ( areaDesc )"),
])
def test_examples_made_invalid_are_refused_naming_the_element(name, old, new, element, words):
    data = raw(name)
    assert old in data
    e = refused(data.replace(old, new, 1))
    assert e.element == element, e
    assert words in e.reason, e


def test_malformed_documents_are_refused_naming_the_element():
    e = refused(raw("cap_thunderstorm.xml").replace(b"</headline>", b"</head>"))
    assert e.element == "/headline" and "not well-formed" in e.reason and "line 22" in e.reason
    e = refused(raw("cap_amber.xml")[:400])
    assert e.element.startswith("/") and "Premature end of data" in e.reason
    assert refused(b"   ").reason == "empty document"
    e = refused(b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"><identifier>x</identifier></alert>')
    assert e.element == "/alert" and "expected alert in namespace urn:oasis:names:tc:emergency:cap:1.2" in e.reason


def test_oversized_documents_and_elements_are_refused_unread():
    data = raw("zh_rainstorm_alert.xml")
    e = refused(data, max_bytes=1024)
    assert e.element == "/alert" and f"{len(data)} bytes, over the limit of 1024" in e.reason
    big = data.replace("<description>".encode(), ("<description>" + "雨" * 20000).encode())
    e = refused(big, max_bytes=1024 * 1024)
    assert e.element == "/alert/info[1]/description" and "over the limit of 16384" in e.reason


def test_no_dtd_no_entities():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&b;</identifier></alert>')
    e = refused(bomb)
    assert e.element == "/alert" and "DOCTYPE" in e.reason
    xxe = (b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>')
    assert "DOCTYPE" in refused(xxe).reason


def test_order_text_is_cut_to_the_limit_and_the_full_text_kept():
    _r, rain = parse(raw("zh_rainstorm_alert.xml"))
    short, full = order_text(rain.info, 60)
    assert len(short) == 60 and short.endswith("…") and short.startswith("仙居县气象台发布暴雨红色预警信号")
    assert full == "\n".join([rain.info.headline, rain.info.description, rain.info.instruction])
    whole, _ = order_text(rain.info, 1000)
    assert not whole.endswith("…") and "防汛抗旱专业队做好抢险准备" in whole


def test_rule_table_mistakes_are_named_in_the_configuration(tmp_path):
    from gateway.config import ConfigError, load_config
    cfg = tmp_path / "yihu.toml"
    cfg.write_text('[[cap.rules]]\nname = "暴雨"\ntarget = "township:*"\n'
                   '[[cap.rules]]\nname = "坏"\nseverity = ["Huge"]\n'
                   '[[cap.rules]]\nname = "坏2"\ntarget = "region:x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert any(p.startswith("cap.rules[1].severity: rule '坏': Huge not one of") for p in e.value.problems)
    assert any(p.startswith("cap.rules[2]") and "region:x" in p for p in e.value.problems), e.value.problems


def test_the_readme_rule_table_example_is_a_valid_configuration(tmp_path):
    from gateway.config import load_config
    readme = (HERE.parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("```toml\n[cap]\n", 1)[1].split("```", 1)[0]
    # the certificate file of the example does not exist here; everything else is taken as written
    body = "[cap]\n" + "\n".join(line for line in block.splitlines() if not line.startswith("trusted_certs"))
    (tmp_path / "yihu.toml").write_text(body, encoding="utf-8")
    cap = load_config(tmp_path / "yihu.toml").cap
    assert [r.name for r in cap.rules] == ["暴雨红色预警", "地质灾害"]
    assert cap.rules[0].target == "township:*" and cap.rules[1].confirm is True
