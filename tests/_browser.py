"""Real headless Chromium through Selenium, for the wall board's tests.

Chromium, its driver and the CJK fonts are Debian packages (chromium, chromium-driver,
fonts-noto-cjk): where they are missing and apt-get can run (root), they are installed here,
once per session.  Otherwise the tests FAIL, naming the packages: like PostgreSQL, a browser test
never skips."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from tests._debian import ensure_packages

PACKAGES = ("chromium", "chromium-driver", "fonts-noto-cjk")
CJK_FONT_DIR = Path("/usr/share/fonts/opentype/noto")
OUTPUT = Path(os.environ.get("YIHU_TEST_OUTPUT", Path(__file__).resolve().parent.parent / "test-output"))
WIDTH, HEIGHT = 1920, 1080


def _missing() -> list[str]:
    missing = [p for p, exe in (("chromium", "chromium"), ("chromium-driver", "chromedriver"))
               if shutil.which(exe) is None]
    if not any(CJK_FONT_DIR.glob("NotoSansCJK*")):
        missing.append("fonts-noto-cjk")
    return missing


def ensure_chromium() -> None:
    ensure_packages(PACKAGES, _missing, "browser tests")


def start_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    ensure_chromium()
    # Selenium logs every WebDriver command at DEBUG, the board's one-time ?key= URL included (the
    # suite's secret watch, tests/secrets.py, rightly flags it): the test tool's chatter, not the
    # gateway's, so it stays at INFO.
    logging.getLogger("selenium").setLevel(logging.INFO)
    opts = Options()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1", "--lang=zh-CN"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    # The wall's viewport exactly, whatever the window decorations.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    return driver


def screenshot(driver, name: str) -> Path:
    """Saved for a person to look at: test-output/board/NAME.png (or under $YIHU_TEST_OUTPUT)."""
    path = OUTPUT / "board" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
