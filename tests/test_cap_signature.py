"""Signed CAP alerts (enveloped XML-DSig): checked against cap.trusted_certs.  The documents are
signed here with signxml's signer and a certificate made by the test, independently of the
intake's checking code."""
import datetime
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from sqlalchemy import select

from gateway.cap.config import CapSection
from gateway.cap.document import CapRefused, parse
from gateway.cap.signature import SignatureCheck, load_certs
from gateway.storage.schema import cap_alerts

RAIN = (Path(__file__).resolve().parent / "cap" / "zh_rainstorm_alert.xml").read_bytes()


def make_cert(cn: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def weather_office():
    return make_cert("xianju-qxt")


@pytest.fixture(scope="module")
def stranger():
    return make_cert("somebody-else")


def sign(raw: bytes, key_cert) -> bytes:
    key, cert = key_cert
    root = etree.fromstring(raw)
    signed = XMLSigner(signature_algorithm="rsa-sha256", digest_algorithm="sha256").sign(root, key=key, cert=cert)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def check(raw: bytes, certs, require=True):
    root, alert = parse(raw)
    return SignatureCheck([(f"cert{i}.pem", c.decode()) for i, c in enumerate(certs)], require)(root, alert)


def test_a_signed_alert_is_schema_valid_and_verified(weather_office):
    signed = sign(RAIN, weather_office)
    assert b"<ds:Signature" in signed
    state, alert = check(signed, [weather_office[1]])
    assert state == "verified" and alert.info.event == "暴雨" and alert.identifier == "33102441600000_20260701083000"


def test_tampered_unsigned_and_foreign_alerts_are_refused(weather_office, stranger):
    signed = sign(RAIN, weather_office)
    tampered = signed.replace("白塔镇、田市镇</areaDesc>".encode(), "全县</areaDesc>".encode())
    with pytest.raises(CapRefused) as e:
        check(tampered, [weather_office[1]])
    assert e.value.element == "/alert/Signature" and "not valid for any trusted certificate" in e.value.reason
    with pytest.raises(CapRefused) as e:
        check(sign(RAIN, stranger), [weather_office[1]])
    assert e.value.element == "/alert/Signature"
    with pytest.raises(CapRefused) as e:
        check(RAIN, [weather_office[1]])
    assert e.value.element == "/alert/Signature" and "no XML signature" in e.value.reason
    assert check(RAIN, [weather_office[1]], require=False)[0] == "none"


def test_a_second_trusted_certificate_is_tried(weather_office, stranger):
    assert check(sign(RAIN, weather_office), [stranger[1], weather_office[1]])[0] == "verified"


def test_without_trusted_certs_signatures_are_noted_unchecked(weather_office):
    assert check(sign(RAIN, weather_office), [])[0] == "unchecked"
    assert check(RAIN, [])[0] == "none"


def test_unreadable_trusted_certs_are_refused_in_the_configuration(tmp_path):
    with pytest.raises(ValueError, match="trusted_certs: cannot read"):
        CapSection(trusted_certs=[str(tmp_path / "missing.pem")])
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        load_certs([str(tmp_path / "junk.pem")])


@pytest_twisted.inlineCallbacks
def test_the_intake_records_the_signature_and_refuses_a_forged_alert(database, weather_office):
    from twisted.internet import reactor

    from gateway.cap.config import CapRule
    from gateway.cap.intake import CapIntake
    from gateway.escalation.config import EscalationConfig
    from gateway.orders.service import OrderService
    from gateway.directory.roster import read_roster
    from gateway.directory.store import import_roster
    yield database.run(import_roster, read_roster(Path(__file__).resolve().parent.parent / "deploy" / "examples"
                                                  / "roster.yaml"), source="t", actor="test")
    intake = CapIntake(database, reactor, OrderService(database, reactor, None, None),
                       CapSection(rules=[CapRule(name="暴雨", event=["暴雨"], target="township:*")]),
                       EscalationConfig(), verify=SignatureCheck([("office.pem", weather_office[1].decode())]))
    signed = sign(RAIN, weather_office)
    forged = signed.replace("白塔镇、田市镇</areaDesc>".encode(), "全县</areaDesc>".encode())
    bad = yield intake.take(forged, "api:t")
    assert (bad.state, bad.element) == ("refused", "/alert/Signature")
    good = yield intake.take(signed, "api:t")
    assert (good.state, good.signature, good.action) == ("accepted", "verified", "proposal")
    rows = yield database.run(lambda c: c.execute(select(cap_alerts.c.state, cap_alerts.c.signature, cap_alerts.c.raw)
                                                  .order_by(cap_alerts.c.id)).all())
    assert [(r.state, r.signature) for r in rows] == [("refused", None), ("accepted", "verified")]
    assert rows[0].raw == forged
