"""The try-it page in a real headless browser (Debian's chromium through chromedriver + selenium).

Skipped when selenium, chromium or chromedriver is missing (CI installs them: see docs/serving.md)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from _serve_helpers import Server
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None, reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _cards(driver: webdriver.Chrome, list_id: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f"#{list_id} li.card")


def _submit(driver: webdriver.Chrome, field: str, text: str, button: str) -> None:
    box = driver.find_element(By.ID, field)
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, button).click()


def test_pick_a_user_see_history_and_recommendations(browser: webdriver.Chrome, ease_server: Server, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 30)
    browser.get(ease_server.url + "/")
    wait.until(lambda d: "ease (general) on synthetic" in d.find_element(By.ID, "info").text)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#user-ids option")) == 200)

    _submit(browser, "user", "0", "go")  # user 0 walks in cluster 0, whose items 0..9 have images
    wait.until(lambda d: len(_cards(d, "recs")) == 10 and _cards(d, "history"))
    expected = ease_server.client.get("/recommend", params={"user": "0", "k": 10}).json()["items"]
    assert [card.get_attribute("data-item") for card in _cards(browser, "recs")] == [e["item"] for e in expected]
    titles = [card.find_element(By.CLASS_NAME, "title").text for card in _cards(browser, "recs")]
    assert titles[0] == f"1. {expected[0]['title']}" and all("(cluster" in t for t in titles)
    history = ease_server.client.get("/users/0", params={"limit": 12}).json()["history"]
    assert [card.get_attribute("data-item") for card in _cards(browser, "history")] == [e["item"] for e in history]
    wait.until(
        lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('#history img, #recs img')];"
            "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth === 20);"
        )
    )
    assert "by model" in browser.find_element(By.ID, "recs-note").text
    assert not browser.find_element(By.ID, "error").is_displayed()
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes().startswith(b"\x89PNG")

    _submit(browser, "user", "nobody", "go")
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    error = browser.find_element(By.ID, "error").text
    assert "404" in error and "unknown user 'nobody'" in error and "popular items for unknown users" in error
    # the error replaces the earlier answer: no stale recommendations or history under it
    assert _cards(browser, "recs") == [] and _cards(browser, "history") == []
    assert browser.find_element(By.ID, "recs-note").text == ""

    browser.find_element(By.ID, "fallback").click()  # the control the error message points to
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: len(_cards(d, "recs")) == 10)
    popular = ease_server.client.get("/recommend", params={"user": "nobody", "k": 10, "fallback": "popularity"}).json()["items"]
    assert [card.get_attribute("data-item") for card in _cards(browser, "recs")] == [e["item"] for e in popular]
    assert "by popularity" in browser.find_element(By.ID, "recs-note").text
    assert "not in the dataset" in browser.find_element(By.ID, "history-note").text
    assert not browser.find_element(By.ID, "error").is_displayed()
    browser.find_element(By.ID, "fallback").click()


def test_session_form(browser: webdriver.Chrome, ease_server: Server) -> None:
    wait = WebDriverWait(browser, 30)
    browser.get(ease_server.url + "/")
    wait.until(lambda d: "ease" in d.find_element(By.ID, "info").text)
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("5")
    _submit(browser, "session", "43, 44 nope", "go-session")
    wait.until(lambda d: len(_cards(d, "recs")) == 5)
    note = browser.find_element(By.ID, "recs-note").text
    assert "co-occurrence" in note and "unknown ids dropped: nope" in note
    assert [card.get_attribute("data-item") for card in _cards(browser, "history")] == ["43", "44"]
