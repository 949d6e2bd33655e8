"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven by Selenium
through the packaged chromedriver: no browser or driver is downloaded (Selenium Manager is
not asked: the driver's path is given). Used by tests/test_report_browser.py, and run as
`python -m tests.browser REPORT_DIR OUT_DIR` (`make screenshots`) to take the README's
screenshots of a report.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
DESKTOP, PHONE = (1280, 800), (375, 740)


def binaries() -> tuple[str, str] | None:
    """(browser, driver) on the PATH, or None."""
    browser = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    return (browser, driver) if browser and driver else None


def chromium(size: tuple[int, int] = DESKTOP) -> Any:
    """A headless Chromium whose console messages are kept (driver.get_log("browser"))."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = binaries()
    assert found is not None, "apt-get install chromium chromium-driver"
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
                     f"--window-size={size[0]},{size[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def set_viewport(driver: Any, width: int, height: int) -> None:
    """The page's viewport exactly this size (a window's size includes no chrome headless,
    but emulation makes sure, and sets a phone's width where windows have a minimum)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def screenshot(driver: Any, url: str, size: tuple[int, int], path: Path) -> None:
    """The top of the page at this viewport size, as a PNG."""
    set_viewport(driver, *size)
    driver.get(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(driver.get_screenshot_as_png())


def main(report: str, out: str) -> None:
    """The README's screenshots of the report in `report`: its overview at desktop width,
    its catalogue and a user page at phone width."""
    folder = Path(report).resolve()
    users = sorted((folder / "users").glob("*.html"))
    driver = chromium()
    try:
        screenshot(driver, (folder / "index.html").as_uri(), DESKTOP,
                   Path(out) / "report-desktop.png")
        screenshot(driver, (folder / "badges.html").as_uri(), PHONE,
                   Path(out) / "report-phone.png")
        if users:
            screenshot(driver, users[0].as_uri(), PHONE, Path(out) / "report-user-phone.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:3])
