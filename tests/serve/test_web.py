"""The chat page at / in headless Debian Chromium (Selenium): type, watch the answer stream, stop."""

import shutil
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM, DRIVER = "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "install Debian's chromium and chromium-driver (make browser)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1100,800"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


def _answer(browser):
    found = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant, .msg.error")
    return found[-1] if found else None


def test_chat_page_streams_an_answer(browser, live, tmp_path):
    browser.get(live.url + "/")
    browser.find_element(By.ID, "temperature").clear()
    browser.find_element(By.ID, "temperature").send_keys("0")
    browser.find_element(By.ID, "max_tokens").clear()
    browser.find_element(By.ID, "max_tokens").send_keys("24")
    browser.find_element(By.ID, "input").send_keys("What is the capital of France?")
    browser.find_element(By.ID, "send").click()
    seen, deadline = [], time.time() + 120
    while time.time() < deadline:
        el = _answer(browser)
        if el is not None:
            if not seen or el.text != seen[-1]:
                seen.append(el.text)
            if el.get_attribute("data-done") == "1":
                break
        time.sleep(0.05)
    final = _answer(browser)
    assert final.get_attribute("class") == "msg assistant", final.text
    assert "Paris" in final.text
    assert len([s for s in seen if s]) >= 2, seen  # it grew on screen: streamed, not one block
    assert browser.find_element(By.ID, "status").text.startswith("done")
    shot = tmp_path / "chat.png"  # kept by pytest under its basetemp for a look
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 5000


def test_stop_button_cancels_the_request(browser, live):
    browser.get(live.url + "/")
    browser.find_element(By.ID, "max_tokens").clear()
    browser.find_element(By.ID, "max_tokens").send_keys("2000")
    browser.find_element(By.ID, "input").send_keys("Write a very long story about a dragon.")
    before = live.state.scheduler.stats.cancelled
    browser.find_element(By.ID, "send").click()
    deadline = time.time() + 120
    while not (_answer(browser) is not None and _answer(browser).text) and time.time() < deadline:
        time.sleep(0.05)
    browser.find_element(By.ID, "stop").click()
    while live.state.scheduler.running and time.time() < deadline:
        time.sleep(0.05)
    assert live.state.scheduler.running == 0 and live.state.scheduler.stats.cancelled == before + 1
    assert browser.find_element(By.ID, "status").text == "stopped"
