"""A CAP 1.2 document: read safely, checked against the OASIS schema, reduced to what Yihu uses.

Every inbound byte is untrusted: the parser never loads a DTD, resolves an entity or touches the
network; a document with a DOCTYPE, over the size limit, not well-formed or not valid against
``CAP-v1.2.xsd`` (shipped beside this module) raises ``CapRefused`` naming the element and what
is wrong.  Pure functions: no Twisted, no database.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lxml import etree

NS = "urn:oasis:names:tc:emergency:cap:1.2"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SCHEMA_FILE = Path(__file__).with_name("CAP-v1.2.xsd")
_Q = "{%s}" % NS


class CapRefused(ValueError):
    """The document is not taken.  ``element`` names where (a path like /alert/info[1]/severity,
    or /alert for the document as a whole); ``reason`` says what is wrong."""

    def __init__(self, element: str, reason: str):
        self.element, self.reason = element, reason
        super().__init__(f"{element}: {reason}")


@dataclass(frozen=True)
class Info:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str = ""
    description: str = ""
    instruction: str = ""
    area_descs: tuple[str, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()      # (valueName, value)


@dataclass(frozen=True)
class Alert:
    identifier: str
    sender: str
    sent: str                                        # as written: part of the alert's identity
    status: str                                      # Actual / Exercise / System / Test / Draft
    msg_type: str                                    # Alert / Update / Cancel / Ack / Error
    scope: str
    references: tuple[str, ...] = ()                 # keys "sender,identifier,sent" of earlier alerts
    info: Info | None = None                         # the zh-CN block, else the first one
    signed: bool = False                             # a ds:Signature is present (verified or not: see intake)
    languages: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """CAP's own identity of a message, the form `references` uses."""
        return f"{self.sender},{self.identifier},{self.sent}"


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE), _parser()))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=False, remove_pis=False)


def _error_element(root, err) -> str:
    """The path of the element a schema error is about: lxml names it and its line."""
    m = re.match(r"Element '(?:\{[^}]*\})?([\w:.-]+)'", err.message)
    if m:
        name = m.group(1).rpartition(":")[2]
        for el in root.iter():
            if isinstance(el.tag, str) and el.sourceline == err.line and etree.QName(el).localname == name:
                return _path_of(el)
    return "/alert"


def _clean_message(msg: str) -> str:
    return msg.replace(_Q, "").replace("{%s}" % DSIG_NS, "ds:")


def parse(raw: bytes, max_bytes: int = 256 * 1024, max_text_chars: int = 16 * 1024) -> tuple[etree._Element, Alert]:
    """(root element, Alert) of a valid CAP 1.2 document, or CapRefused."""
    if not isinstance(raw, (bytes, bytearray)):
        raise CapRefused("/alert", "the document must be bytes")
    if len(raw) > max_bytes:
        raise CapRefused("/alert", f"document is {len(raw)} bytes, over the limit of {max_bytes} (cap.max_bytes)")
    if not raw.strip():
        raise CapRefused("/alert", "empty document")
    try:
        doc = etree.fromstring(bytes(raw), _parser()).getroottree()
    except etree.XMLSyntaxError as e:
        line = getattr(e, "lineno", None)
        raise CapRefused(_element_of_syntax_error(str(e)), f"not well-formed XML (line {line}): {e.msg}") from None
    if doc.docinfo.doctype:
        raise CapRefused("/alert", "a DOCTYPE is not allowed in a CAP message (no DTD is ever loaded)")
    root = doc.getroot()
    if root.tag != _Q + "alert":
        raise CapRefused("/" + etree.QName(root).localname,
                         f"root element is {_clean_message(str(root.tag))}, expected alert in namespace {NS}")
    for el in root.iter():
        if isinstance(el.tag, str) and el.text and len(el.text) > max_text_chars:
            raise CapRefused(_path_of(el),
                             f"{len(el.text)} characters, over the limit of {max_text_chars} (cap.max_text_chars)")
    s = schema()
    if not s.validate(doc):
        err = s.error_log[0]
        raise CapRefused(_error_element(root, err), f"{_clean_message(err.message)} (line {err.line})")
    return root, alert_from(root)


def _path_of(el) -> str:
    parts = []
    while el is not None:
        name = etree.QName(el).localname
        parent = el.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == el.tag]
            if len(same) > 1:
                name += f"[{same.index(el) + 1}]"
        parts.append(name)
        el = parent
    return "/" + "/".join(reversed(parts))


def _element_of_syntax_error(msg: str) -> str:
    """The tag libxml2 names in a well-formedness error, when it names one."""
    m = re.search(r"(?:tag mismatch: |Premature end of data in tag |Extra content at the end of the document)(\w*)", msg)
    return f"/{m.group(1)}" if m and m.group(1) else "/alert"


def _text(el, name: str) -> str:
    found = el.find(_Q + name)
    return (found.text or "").strip() if found is not None else ""


def _pairs(el, name: str) -> tuple[tuple[str, str], ...]:
    return tuple((_text(p, "valueName"), _text(p, "value")) for p in el.findall(_Q + name))


def _info(el) -> Info:
    areas = el.findall(_Q + "area")
    return Info(language=_text(el, "language") or "en-US",
                categories=tuple((c.text or "").strip() for c in el.findall(_Q + "category")),
                event=_text(el, "event"), urgency=_text(el, "urgency"), severity=_text(el, "severity"),
                certainty=_text(el, "certainty"), headline=_text(el, "headline"),
                description=_text(el, "description"), instruction=_text(el, "instruction"),
                area_descs=tuple(_text(a, "areaDesc") for a in areas),
                geocodes=tuple(g for a in areas for g in _pairs(a, "geocode")))


def alert_from(root) -> Alert:
    infos = [_info(i) for i in root.findall(_Q + "info")]
    chosen = next((i for i in infos if i.language.lower().startswith("zh")), infos[0] if infos else None)
    return Alert(identifier=_text(root, "identifier"), sender=_text(root, "sender"), sent=_text(root, "sent"),
                 status=_text(root, "status"), msg_type=_text(root, "msgType"), scope=_text(root, "scope"),
                 references=tuple(_text(root, "references").split()), info=chosen,
                 signed=root.find("{%s}Signature" % DSIG_NS) is not None,
                 languages=tuple(i.language for i in infos))


def order_text(info: Info, limit: int) -> tuple[str, str]:
    """(text cut to `limit` characters for the SMS, the full text) from headline, description and
    instruction.  The cut ends with an ellipsis so nobody mistakes it for the whole warning."""
    full = "\n".join(p for p in (info.headline, info.description, info.instruction) if p)
    flat = " ".join(full.split())
    if len(flat) <= limit:
        return flat, full
    return flat[:max(1, limit - 1)] + "…", full
