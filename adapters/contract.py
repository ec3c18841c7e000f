"""The API's one contract: field declarations that both validate requests and write /openapi.json.

A route declares its body, query and path fields here; `check` enforces them on every request
(types, lengths that match the columns, enumerations, unknown fields, NUL, control characters,
lone surrogates) and `schema` renders the same declaration as JSON Schema for the OpenAPI 3.1
document.  There is no second description to drift from the first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# NUL and C0 controls: refused everywhere; a one-line field also refuses tab, CR and LF.
_CONTROLS_MULTI = "\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f"
_CONTROLS_LINE = "\u0000-\u001f\u007f"


class Invalid(Exception):
    """A value breaks its declaration; `field` names it (dotted path), `message` says how."""

    def __init__(self, field_name: str, message: str):
        self.field, self.message = field_name, message
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Field:
    name: str
    type: str                                   # string / boolean / integer / array / object / any_of
    description: str = ""
    required: bool = False
    max_length: int | None = None               # strings: characters (the column's limit)
    enum: tuple | None = None
    pattern: str | None = None                  # searched, as JSON Schema does
    multiline: bool = False                     # strings: tab, CR and LF allowed
    not_blank: bool = False                     # strings: at least one character that is not a space
    fmt: str | None = None                      # JSON Schema format, e.g. date
    items: "Field | None" = None                # arrays
    max_items: int | None = None
    properties: tuple["Field", ...] = ()        # objects (no other fields allowed)
    choices: tuple["Field", ...] = ()           # any_of: the first whose JSON type matches
    example: Any = None

    # --- JSON Schema ---------------------------------------------------------------------------
    def schema(self) -> dict:
        if self.type == "any_of":
            s: dict = {"anyOf": [c.schema() for c in self.choices]}
        elif self.type == "object":
            s = object_schema(self.properties)
        else:
            s = {"type": self.type}
        if self.type == "string":
            if self.max_length is not None:
                s["maxLength"] = self.max_length
            if self.not_blank:
                s["minLength"] = 1
            if self.enum:
                s["enum"] = list(self.enum)
            if self.fmt:
                s["format"] = self.fmt
            if self.pattern:
                s["pattern"] = self.pattern
            elif not self.enum:
                controls = _CONTROLS_MULTI if self.multiline else _CONTROLS_LINE
                s["pattern"] = f"^[^{controls}]*$"
        if self.type == "array":
            s["items"] = self.items.schema() if self.items else {}
            if self.max_items is not None:
                s["maxItems"] = self.max_items
        if self.description:
            s["description"] = self.description
        if self.example is not None:
            s["examples"] = [self.example]
        return s

    # --- validation ----------------------------------------------------------------------------
    def check(self, value: Any, where: str | None = None) -> Any:
        where = where or self.name
        if self.type == "any_of":
            for c in self.choices:
                if _json_type_ok(c.type, value):
                    return c.check(value, where)
            raise Invalid(where, f"must be {' or '.join(_TYPE_WORD[c.type] for c in self.choices)}")
        if not _json_type_ok(self.type, value):
            raise Invalid(where, f"must be {_TYPE_WORD[self.type]}, got {_json_type_name(value)}")
        if self.type == "string":
            self._check_text(value, where)
        elif self.type == "array":
            if self.max_items is not None and len(value) > self.max_items:
                raise Invalid(where, f"at most {self.max_items} items, got {len(value)}")
            return [self.items.check(v, f"{where}[{i}]") for i, v in enumerate(value)] if self.items else value
        elif self.type == "object":
            return check_object(self.properties, value, where + ".")
        return value

    def _check_text(self, value: str, where: str) -> None:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise Invalid(where, "contains a lone surrogate (not valid Unicode text)")
        if "\x00" in value:
            raise Invalid(where, "contains NUL")
        bad = re.search(f"[{_CONTROLS_MULTI if self.multiline else _CONTROLS_LINE}]", value)
        if bad:
            raise Invalid(where, f"contains the control character U+{ord(bad.group()):04X}")
        if self.max_length is not None and len(value) > self.max_length:
            raise Invalid(where, f"at most {self.max_length} characters, got {len(value)}")
        if self.not_blank and not value.strip():
            raise Invalid(where, "must not be empty")
        if self.enum and value not in self.enum:
            raise Invalid(where, f"must be one of {', '.join(self.enum)}, got {value!r}")
        if self.pattern and not re.search(self.pattern, value):
            raise Invalid(where, f"must match {self.pattern}")


_TYPE_WORD = {"string": "text", "boolean": "true or false", "integer": "a whole number", "array": "a list",
              "object": "an object"}


def _json_type_ok(kind: str, value: Any) -> bool:
    return {"string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "array": isinstance(value, list),
            "object": isinstance(value, dict)}[kind]


def _json_type_name(value: Any) -> str:
    for kind, word in (("boolean", "true/false"), ("integer", "a number"), ("string", "text"),
                       ("array", "a list"), ("object", "an object")):
        if _json_type_ok(kind, value):
            return word
    return "null" if value is None else "a number"


def object_schema(fields: tuple[Field, ...]) -> dict:
    s = {"type": "object", "additionalProperties": False,
         "properties": {f.name: f.schema() for f in fields}}
    required = [f.name for f in fields if f.required]
    if required:
        s["required"] = required
    return s


def check_object(fields: tuple[Field, ...], value: dict, prefix: str = "") -> dict:
    known = {f.name: f for f in fields}
    for k in value:
        if k not in known:
            raise Invalid(f"{prefix}{k or '(empty name)'}", f"unknown field (known: {', '.join(known) or 'none'})")
    out = {}
    for f in fields:
        if f.name in value:
            out[f.name] = f.check(value[f.name], f"{prefix}{f.name}")
        elif f.required:
            raise Invalid(f"{prefix}{f.name}", "missing")
    return out


def text(name: str, limit: int, description: str = "", **kw) -> Field:
    """A text field whose limit matches its column."""
    return Field(name, "string", description, max_length=limit, **kw)


@dataclass(frozen=True)
class Response:
    description: str
    schema: dict | None = None                       # JSON body
    media_type: str = "application/json"


@dataclass
class Route:
    """One operation: what it needs (scope), what it accepts, what it answers."""
    method: str
    path: str                                        # /api/v1/... or a site path such as /board
    scope: str | None                                # None: no key (health, metrics)
    summary: str
    handler: Any = None
    body: tuple[Field, ...] | None = None            # None: no body; () an empty JSON object
    query: tuple[Field, ...] = ()
    params: tuple[Field, ...] = ()
    ok: dict[int, Response] = field(default_factory=dict)
    max_body: int = 64 * 1024
    headers: tuple[Field, ...] = ()
    errors: tuple[int, ...] = ()                     # beyond the usual ones
    raw_body: tuple[str, ...] = ()                   # a document that is not JSON: its media types (bytes, max_body)

    def error_codes(self) -> tuple[int, ...]:
        codes = {404, 405, 422, 503}
        if self.scope:
            codes |= {401, 403, 429}
        if self.body is not None:
            codes |= {400, 413, 415}
        if self.raw_body:
            codes |= {415}
        return tuple(sorted(codes | set(self.errors)))
