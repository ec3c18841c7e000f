"""The printed form as PDF, where a converter is installed: a child process on the reactor, never
a blocked reactor.  Chromium (headless, --print-to-pdf) or wkhtmltopdf, whichever is found."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.utils import getProcessOutputAndValue

CONVERTERS = ("chromium", "chromium-browser", "google-chrome", "wkhtmltopdf")


class NoConverter(LookupError):
    pass


def find_converter(configured: str = "") -> str | None:
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return next((p for p in map(shutil.which, CONVERTERS) if p), None)


def _argv(converter: str, html: Path, pdf: Path) -> list[str]:
    if Path(converter).name.startswith("wkhtmltopdf"):
        return ["--quiet", "--page-size", "A4", str(html), str(pdf)]
    return ["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}", html.as_uri()]


async def html_to_pdf(reactor, html: str, converter: str, timeout_s: float = 60.0) -> bytes:
    """The PDF of `html`; raises NoConverter, or RuntimeError naming the converter and its error."""
    with tempfile.TemporaryDirectory(prefix="yihu-form-") as d:
        src, out = Path(d) / "form.html", Path(d) / "form.pdf"
        src.write_text(html, encoding="utf-8")
        d_out = getProcessOutputAndValue(converter, _argv(converter, src, out), env={**os.environ, "HOME": d},
                                         path=d, reactor=reactor)
        timer = reactor.callLater(timeout_s, d_out.cancel)
        try:
            _stdout, err, code = await d_out
        finally:
            if timer.active():
                timer.cancel()
        if code != 0 or not out.is_file():
            raise RuntimeError(f"PDF converter {converter} exited {code}: {err.decode('utf-8', 'replace')[-300:]}")
        return out.read_bytes()
