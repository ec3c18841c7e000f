"""Enough of Asterisk's dialplan language to run the project's own hotline contexts
(dialplans/extensions.conf) in the emulated PBX, so that what the tests exercise is the file a
real Asterisk loads, not a copy of its intent.

Parsed: `[context]` sections, `exten => EXTEN,PRIORITY,App(args)` and `same => n(label),...`
lines, `;` comments, `[globals]` assignments, extension patterns (`_X.`, `_NXX`, ...).
Evaluated: `${VAR}`, `${EXTEN}`, `${QUEUE_MEMBER(queue,logged)}` (through a callback), `$[...]`
with `=`, `!=`, `<`, `>`, `&`, `|` and quoted strings, and the applications in APPLICATIONS.
An application this module does not know is an error when the context is loaded (never
silently skipped: a step the emulator ignored could be the one that holds a caller), and so is
a function it does not know when it is evaluated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

APPLICATIONS = ("Answer", "NoOp", "Set", "Goto", "GotoIf", "Queue", "AGI", "Hangup", "UserEvent", "Playback",
                "Dial")


class DialplanError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    priority: int
    label: str | None
    app: str
    args: str
    line: int


@dataclass
class Dialplan:
    source: str
    globals: dict[str, str] = field(default_factory=dict)
    contexts: dict[str, dict[str, list[Step]]] = field(default_factory=dict)

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, contexts: tuple[str, ...] | None = None) -> "Dialplan":
        """Parse `path`; keep only `contexts` (and [globals]) when given.  DialplanError names
        the file and line of anything it cannot run."""
        text = Path(path).read_text(encoding="utf-8")
        return cls.parse(text, str(path), contexts)

    @classmethod
    def parse(cls, text: str, source: str = "<dialplan>", contexts: tuple[str, ...] | None = None) -> "Dialplan":
        plan = cls(source)
        current: str | None = None
        last: tuple[str, int] | None = None          # (exten, priority) for `same =>` and `n`
        for no, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            m = re.fullmatch(r"\[([^\]]+)\]", line)
            if m:
                current, last = m.group(1).strip(), None
                continue
            if current is None:
                raise DialplanError(f"{source}:{no}: a line outside any [context]")
            keep = contexts is None or current in contexts
            if current == "globals":
                name, eq, value = line.partition("=")
                if not eq:
                    raise DialplanError(f"{source}:{no}: [globals] wants NAME=value")
                plan.globals[name.strip()] = value.strip()
                continue
            m = re.fullmatch(r"(exten|same)\s*=>?\s*(.*)", line)
            if not m:
                raise DialplanError(f"{source}:{no}: not a dialplan line: {line!r}")
            body = m.group(2)
            if m.group(1) == "exten":
                exten, _, body = body.partition(",")
                exten = exten.strip()
            else:
                if last is None:
                    raise DialplanError(f"{source}:{no}: `same =>` with no extension before it")
                exten = last[0]
            prio_text, _, call = body.partition(",")
            pm = re.fullmatch(r"\s*(\d+|n)\s*(?:\((\w+)\))?\s*", prio_text)
            if not pm:
                raise DialplanError(f"{source}:{no}: bad priority {prio_text!r}")
            if pm.group(1) == "n":
                if last is None or last[0] != exten:
                    raise DialplanError(f"{source}:{no}: priority n with no priority before it")
                priority = last[1] + 1
            else:
                priority = int(pm.group(1))
            am = re.fullmatch(r"\s*(\w+)\s*(?:\((.*)\))?\s*", call)
            if not am:
                raise DialplanError(f"{source}:{no}: bad application call {call!r}")
            app, args = am.group(1), am.group(2) or ""
            last = (exten, priority)
            if not keep:
                continue
            if app not in APPLICATIONS:
                raise DialplanError(f"{source}:{no}: application {app}() is not known to the emulated PBX "
                                    f"(it runs {', '.join(APPLICATIONS)})")
            plan.contexts.setdefault(current, {}).setdefault(exten, []).append(
                Step(priority, pm.group(2), app, args, no))
        if contexts is not None:
            missing = [c for c in contexts if c not in plan.contexts]
            if missing:
                raise DialplanError(f"{source}: no context {', '.join(missing)}")
        return plan

    # --- finding -------------------------------------------------------------------------------
    def steps(self, context: str, exten: str) -> list[Step]:
        ctx = self.contexts.get(context)
        if ctx is None:
            raise DialplanError(f"{self.source}: no context [{context}]")
        if exten in ctx:
            return ctx[exten]
        for pattern, steps in ctx.items():
            if pattern.startswith("_") and _pattern(pattern).fullmatch(exten):
                return steps
        raise DialplanError(f"{self.source}: no extension {exten} in [{context}]")

    def has(self, context: str, exten: str) -> bool:
        try:
            self.steps(context, exten)
            return True
        except DialplanError:
            return False

    def index(self, context: str, exten: str, target: str) -> int:
        """Where a Goto lands: a priority number or a label, as an index into steps()."""
        steps = self.steps(context, exten)
        for i, s in enumerate(steps):
            if (target.isdigit() and s.priority == int(target)) or s.label == target:
                return i
        raise DialplanError(f"{self.source}: no priority or label {target!r} in {context},{exten}")


def _strip_comment(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out.append(line[i + 1])
            i += 2
            continue
        if c == ";":
            break
        out.append(c)
        i += 1
    return "".join(out)


def _pattern(p: str) -> re.Pattern:
    rx = []
    for c in p[1:]:
        rx.append({"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(c, re.escape(c)))
    return re.compile("".join(rx))


# --- evaluation ---------------------------------------------------------------------------------

def substitute(text: str, lookup, function) -> str:
    """Expand ${...} (innermost first) and $[...]; lookup(name) for variables, function(name,
    args) for functions."""
    for _ in range(100):
        m = re.search(r"\$\{([^${}]*)\}", text)
        if m is None:
            break
        inner = m.group(1)
        fm = re.fullmatch(r"(\w+)\((.*)\)", inner)
        value = function(fm.group(1), fm.group(2)) if fm else lookup(inner)
        text = text[:m.start()] + str(value) + text[m.end():]
    for _ in range(100):
        m = re.search(r"\$\[([^\[\]]*)\]", text)
        if m is None:
            break
        text = text[:m.start()] + expression(m.group(1)) + text[m.end():]
    return text


def expression(expr: str) -> str:
    """Asterisk's $[...] for what the project's dialplan uses: comparisons joined by & and |."""
    def atom(a: str) -> str:
        a = a.strip()
        return a[1:-1] if len(a) >= 2 and a[0] == a[-1] == '"' else a

    def compare(part: str) -> str:
        for op in ("!=", "<=", ">=", "=", "<", ">"):
            left, found, right = _split_outside_quotes(part, op)
            if found:
                a, b = atom(left), atom(right)
                try:
                    x, y = float(a), float(b)
                except ValueError:
                    x, y = a, b
                ok = {"!=": x != y, "<=": x <= y, ">=": x >= y, "=": x == y, "<": x < y, ">": x > y}[op]
                return "1" if ok else "0"
        return atom(part)

    def truth(v: str) -> bool:
        return v not in ("", "0")
    ors = []
    for alt in _split_all(expr, "|"):
        ands = [compare(p) for p in _split_all(alt, "&")]
        ors.append("1" if all(truth(v) for v in ands) else "0") if len(ands) > 1 else ors.append(ands[0])
    if len(ors) == 1:
        return ors[0]
    return "1" if any(truth(v) for v in ors) else "0"


def _split_outside_quotes(text: str, op: str):
    q = False
    for i in range(len(text)):
        if text[i] == '"':
            q = not q
        elif not q and text.startswith(op, i):
            # "=" must not match inside "!=", "<=", ">="
            if op == "=" and i > 0 and text[i - 1] in "!<>":
                continue
            if op in ("<", ">") and text.startswith("=", i + 1):
                continue
            return text[:i], True, text[i + len(op):]
    return text, False, ""


def _split_all(text: str, sep: str) -> list[str]:
    parts, cur, q = [], [], False
    for c in text:
        if c == '"':
            q = not q
        if c == sep and not q:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts
