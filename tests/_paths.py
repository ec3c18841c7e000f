"""Where the tests find their data.

- ASTERISK (tests/data/asterisk-22): the sessions recorded from a real Asterisk 22 (AMI and
  FastAGI).  They are facts about the peer, so they live in the project: every test reading them
  runs from a fresh clone.
- MODEMS (../shared/reference/modems beside the clone; YIHU_REFERENCE_DIR overrides the
  reference folder): real modem answers collected by the Gammu project, GPL-2.0, so they are not
  copied into the project.  A test that reads them calls `modem_dumps(...)` inside the test (never
  at import or collection time, so their absence touches no other test): where the folder is
  missing the test FAILS in CI (environment CI=true) and SKIPS elsewhere, naming the folder.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
ASTERISK = DATA / "asterisk-22"
REFERENCE = Path(os.environ.get("YIHU_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
MODEMS = REFERENCE / "modems"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def asterisk(name: str) -> Path:
    """A recorded Asterisk session in tests/data/asterisk-22 (always there in a clone)."""
    p = ASTERISK / name
    if not p.exists():
        raise FileNotFoundError(f"recorded Asterisk session missing: {p}")
    return p


def modem_dumps(*parts: str) -> Path:
    """The modem dumps folder (or a part of it) in ../shared/reference/modems; call it from the
    test body.  Missing: pytest.fail in CI, pytest.skip elsewhere, both naming the folder."""
    import pytest
    p = MODEMS.joinpath(*parts)
    if p.exists():
        return p
    why = (f"modem reference dumps not found at {p}: they are GPL-2.0 (Gammu) and not in the "
           f"project; put shared/reference beside the clone or set YIHU_REFERENCE_DIR")
    if in_ci():
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def reference(*parts: str) -> Path:
    """Kept for callers that name the old layout: asterisk-22/... is read from tests/data,
    modems/... through modem_dumps()."""
    if parts and parts[0] == "asterisk-22":
        return asterisk("/".join(parts[1:])) if len(parts) > 1 else ASTERISK
    if parts and parts[0] == "modems":
        return modem_dumps(*parts[1:])
    raise FileNotFoundError(f"no reference data named {'/'.join(parts)}")
