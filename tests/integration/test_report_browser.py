"""report.html in a real browser: Debian's chromium, headless, driven by selenium through
/usr/bin/chromedriver (nothing downloaded). The page loads without a JS error, picking another
series redraws the chart, a column header sorts the metrics table, a row picks its series, and
10,000 series stay quick. Skipped when chromium, chromedriver or selenium is absent."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from rnnkit.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

NASTY = "</script><b>MT_x</b>"
IDS = ["MT_001", "MT_002", "MT_003", "MT_004", NASTY]


def _panel(ids, history=48, horizon=12, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    hours = np.datetime64("2024-03-01T00:00") + np.arange(history + horizon) * np.timedelta64(1, "h")
    stamps = np.datetime_as_string(hours).tolist()
    series = []
    for i, sid in enumerate(ids):
        y = (10 + i) * (1 + 0.3 * np.sin(2 * np.pi * np.arange(history + horizon) / 24))
        model = y[history:] + rng.normal(0, 0.5, horizon)
        series.append({"id": sid,
                       "history": {"t": stamps[:history], "y": y[:history]},
                       "actual": {"t": stamps[history:], "y": y[history:]},
                       "forecasts": {"model": {"y": model, "lo": model - 1, "hi": model + 1},
                                     "naive": {"y": np.full(horizon, y[history - 1])}},
                       # sMAPE falls with i, MASE rises: the two sorts give opposite orders
                       "metrics": {"smape": 50.0 - 3 * i + rng.uniform(), "mase": 0.5 + 0.1 * i}})
    return {"title": "browser test", "series": series, "interval": {"lower": 0.1, "upper": 0.9},
            "summary": {"model": {"smape": 40.0, "mase": 0.8}, "baselines": {"naive": {"smape": 60.0}}},
            "history": {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7]}, "config": {"model": "gru:8"}}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def _open(driver, path):
    driver.get(path.resolve().as_uri())
    ready = driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [] and ready == "1"


def _title(driver) -> str:
    return driver.find_element(By.ID, "series-title").text


def _path(driver, key) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'#chart path[data-key="{key}"]').get_attribute("d")


def _column(driver) -> list[str]:
    return [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#table-body td.id")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_report(tmp_path_factory.mktemp("report") / "report.html", _panel(IDS))


def test_picking_a_series_redraws_the_chart(browser, report):
    _open(browser, report)
    assert _title(browser) == "MT_001"
    first = _path(browser, "model")
    assert first.startswith("M") and "NaN" not in first and first.count("L") == 11  # 12 forecast steps
    Select(browser.find_element(By.ID, "picker")).select_by_visible_text("MT_003")
    assert _title(browser) == "MT_003" and _path(browser, "model") != first
    browser.find_element(By.ID, "next").click()
    assert _title(browser) == "MT_004"
    browser.find_element(By.ID, "next").click()
    assert _title(browser) == NASTY  # drawn as text, not markup
    assert browser.find_elements(By.CSS_SELECTOR, "#series-title b") == []


def test_a_column_header_sorts_the_table_and_a_row_picks_its_series(browser, report):
    _open(browser, report)
    assert _column(browser) == IDS
    browser.find_element(By.CSS_SELECTOR, '#table-head th[data-key="smape"]').click()
    assert _column(browser) == IDS[::-1]
    browser.find_element(By.CSS_SELECTOR, '#table-head th[data-key="smape"]').click()
    assert _column(browser) == IDS
    browser.find_element(By.CSS_SELECTOR, '#table-head th[data-key="mase"]').click()
    assert _column(browser) == IDS
    browser.find_elements(By.CSS_SELECTOR, "#table-body tr")[1].click()
    assert _title(browser) == "MT_002"
    assert "picked" in browser.find_elements(By.CSS_SELECTOR, "#table-body tr")[1].get_attribute("class")


def test_a_baseline_can_be_hidden_the_view_zoomed_and_the_picker_filtered(browser, report):
    _open(browser, report)
    assert _path(browser, "history").count("L") == 47
    browser.find_element(By.ID, "zoom").click()
    assert _path(browser, "history").count("L") == 23  # the last 2 horizons (12 steps) of history
    assert _path(browser, "naive")
    browser.find_element(By.CSS_SELECTOR, '#legend input[data-key="naive"]').click()
    assert browser.find_elements(By.CSS_SELECTOR, '#chart path[data-key="naive"]') == []
    assert _path(browser, "model")
    browser.find_element(By.ID, "filter").send_keys("MT_00")
    options = [o.text for o in Select(browser.find_element(By.ID, "picker")).options]
    assert options == IDS[:4] and _column(browser) == IDS[:4]


def test_ten_thousand_series_stay_quick(browser, tmp_path):
    ids = [f"S{i:05d}" for i in range(10_000)]
    path = write_report(tmp_path / "big.html", _panel(ids, history=24, horizon=6))
    start = time.perf_counter()
    _open(browser, path)
    loaded = time.perf_counter() - start
    assert len(browser.find_elements(By.CSS_SELECTOR, "#table-body tr")) == 25
    assert browser.find_element(By.ID, "page-info").text == "page 1 of 400 · 10000 series"
    start = time.perf_counter()
    browser.find_element(By.CSS_SELECTOR, '#table-head th[data-key="smape"]').click()
    assert _column(browser)[0] == "S09999"
    sorted_in = time.perf_counter() - start
    assert loaded < 10 and sorted_in < 5, (loaded, sorted_in)


def test_the_pointer_shows_the_values_at_its_time(browser, report):
    _open(browser, report)
    chart = browser.find_element(By.CSS_SELECTOR, "#chart svg")
    width = int(chart.get_attribute("width"))
    ActionChains(browser).move_to_element_with_offset(chart, width // 2 - 30, 0).perform()
    tip = browser.find_element(By.CSS_SELECTOR, "#chart .tip")
    assert tip.is_displayed()
    lines = tip.text.splitlines()
    assert lines[0].startswith("2024-03-") and any(line.startswith("model: ") for line in lines)


def test_a_bare_panel_with_integer_times_and_no_extras_loads(browser, tmp_path):
    data = {"series": [{"id": str(i), "history": {"t": [0, 1, 2, 3], "y": [1.0, float("nan"), 2.0, 3.0]},
                        "actual": {"t": [4, 5], "y": [3.0, 4.0]},
                        "forecasts": {"model": {"y": [3.5, 4.5]}}} for i in range(2)]}
    _open(browser, write_report(tmp_path / "bare.html", data))
    history = _path(browser, "history")
    assert history.count("M") == 2 and history.count("L") == 1  # the NaN leaves a gap
    ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#chart text.tick")]
    assert "2" in ticks and not any("-" in t for t in ticks)  # integer times, not dates
    hidden = [s for s in ("summary-section", "training-section", "config-section")
              if not browser.find_element(By.ID, s).is_displayed()]
    assert hidden == ["summary-section", "training-section", "config-section"]
    _open(browser, write_report(tmp_path / "empty.html", {"series": []}))
    assert _title(browser) == "no series"


def test_a_whole_long_history_is_drawn(browser, tmp_path):
    data = _panel(["long"])
    n = 200_000  # Math.min(...values) overflowed the call stack here
    data["series"][0]["history"] = {"t": list(range(-n, 0)), "y": np.sin(np.arange(n) / 24)}
    data["series"][0]["actual"]["t"] = list(range(12))
    _open(browser, write_report(tmp_path / "long.html", data))
    assert _path(browser, "history").count("L") == n - 1
