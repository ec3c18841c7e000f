"""HTTPS through Twisted's TLS endpoint (a self-signed certificate made here), and the committed
OpenAPI document equal to what the running gateway serves."""
import datetime
import ipaddress
import json
from pathlib import Path

import pytest_twisted
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from adapters.openapi import render
from gateway.config import ConfigError, load_config
from tests._http_rig import start_rig

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem", cert_pem


@implementer(IPolicyForHTTPS)
class TrustOnly:
    def __init__(self, pem):
        self.root = Certificate.loadPEM(pem)

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS(hostname.decode(), trustRoot=self.root)


@pytest_twisted.inlineCallbacks
def test_https_with_the_configured_certificate(migrated_url, tmp_path):
    cert, key, pem = self_signed(tmp_path)
    rig = yield start_rig(migrated_url, tmp_path, http={"tls_cert": str(cert), "tls_key": str(key)})
    try:
        port = rig.root.rsplit(":", 1)[1]
        client = treq.client.HTTPClient(Agent(reactor, contextFactory=TrustOnly(pem)))
        resp = yield client.get(f"https://localhost:{port}/api/v1/teams",
                                headers={"Authorization": f"Bearer {rig.keys['read']}"})
        body = json.loads((yield resp.content()))
        assert resp.code == 200 and body["count"] == 40
        # The board's cookie is Secure over HTTPS.
        resp = yield client.get(f"https://localhost:{port}/board?key={rig.keys['read']}", allow_redirects=False)
        assert resp.code == 303 and "Secure" in resp.headers.getRawHeaders("set-cookie")[0]
        # Plain HTTP to the TLS port gets nothing that parses as an answer.
        failed = []
        yield treq.get(f"http://127.0.0.1:{port}/health", persistent=False).addErrback(failed.append)
        assert failed
    finally:
        yield rig.stop()


def test_tls_settings_are_checked_at_load(tmp_path):
    try:
        load_config(None, {"http": {"tls_cert": str(tmp_path / "missing.pem")}})
    except ConfigError as e:
        assert any(p.startswith("http.tls_cert: cannot read") for p in e.problems)
    else:
        raise AssertionError("a missing certificate was accepted")


def test_committed_openapi_is_what_the_code_declares():
    assert json.loads(OPENAPI.read_text("utf-8")) == json.loads(render()), \
        "docs/openapi.json is stale: regenerate with .venv/bin/python -m adapters.openapi > docs/openapi.json"


@pytest_twisted.inlineCallbacks
def test_the_running_gateway_serves_the_committed_document(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        status, served, _ = yield rig.call("GET", "/openapi.json", key=rig.keys["read"])
        assert status == 200 and served == json.loads(OPENAPI.read_text("utf-8"))
        assert served["openapi"] == "3.1.0"
        op = served["paths"]["/api/v1/orders"]["post"]
        assert op["x-required-scope"] == "dispatch"
        props = op["requestBody"]["content"]["application/json"]["schema"]["properties"]
        assert props["incident_ref"]["maxLength"] == 100 and props["voice"]["type"] == "boolean"
        assert served["paths"]["/api/v1/directory/import"]["post"]["x-required-scope"] == "admin"
        status, _, _ = yield rig.call("GET", "/openapi.json")
        assert status == 401
    finally:
        yield rig.stop()
