"""XML signatures on CAP alerts (CAP 1.2 section 3.3.2.1: an enveloped XML-DSig ds:Signature).

signxml does the XML-DSig work: canonicalisation, the enveloped-signature transform, digests and
the signature value, with its defences against signature-wrapping (it hands back only the bytes
that were signed).  Yihu then reads the alert from what signxml returns, never from the document
around it, so an element slipped in beside a valid signature is never acted on.
"""
from __future__ import annotations

from pathlib import Path

from signxml import InvalidInput, InvalidSignature, XMLVerifier

from gateway.cap.document import Alert, CapRefused, alert_from


def load_certs(paths) -> list[tuple[str, str]]:
    """(file name, PEM text) of each trusted certificate; ValueError naming an unreadable one."""
    out = []
    for p in paths:
        try:
            pem = Path(p).read_text("ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"trusted_certs: cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
        if "BEGIN CERTIFICATE" not in pem:
            raise ValueError(f"trusted_certs: {p} is not a PEM certificate")
        out.append((Path(p).name, pem))
    return out


class SignatureCheck:
    """Called by the intake as ``check(root, alert) -> (signature state, alert)``."""

    def __init__(self, certs: list[tuple[str, str]], require: bool = True):
        self.certs, self.require = certs, require

    def __call__(self, root, alert: Alert) -> tuple[str, Alert]:
        if not self.certs:
            return ("unchecked" if alert.signed else "none"), alert
        if not alert.signed:
            if self.require:
                raise CapRefused("/alert/Signature", "no XML signature, and cap.trusted_certs requires one")
            return "none", alert
        problems = []
        for name, pem in self.certs:
            try:
                result = XMLVerifier().verify(root, x509_cert=pem)
            except (InvalidSignature, InvalidInput) as e:
                problems.append(f"{name}: {e}")
                continue
            signed = result.signed_xml
            if signed is None or signed.tag != root.tag:
                problems.append(f"{name}: the signature does not cover the alert element")
                continue
            return "verified", alert_from(signed)
        raise CapRefused("/alert/Signature", "signature not valid for any trusted certificate ("
                         + "; ".join(problems)[:400] + ")")
