"""Where the tests find the shared reference data (recorded Asterisk transcripts, modem dumps).

In CI the clone sits beside a copy of shared/, so it is ../shared/reference from the repository
root; YIHU_REFERENCE_DIR overrides.  A missing folder fails the tests that need it, never skips.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("YIHU_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
ASTERISK = REFERENCE / "asterisk-22"
MODEMS = REFERENCE / "modems"


def reference(*parts: str) -> Path:
    p = REFERENCE.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"reference data missing: {p} (expected ../shared/reference beside the clone)")
    return p
