"""The HTML leaderboard in a real headless Chromium: no console errors, sortable tables.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` package; nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kdbench.cli import cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DATA = Path(__file__).parent / "data" / "records"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent (apt-get install -y chromium chromium-driver)",
)


def start_browser(profile: Path):
    """Chromium driven by Debian's chromedriver, with a fresh profile and logs captured."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch drivers
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    driver = start_browser(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def open_page(driver, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    driver.find_element("css selector", "table.sortable")  # the page has rendered


def column_sort_values(driver, table_id: str, header: str) -> list[str]:
    """The data-sort values of a column, top to bottom, as the page shows them now."""
    return driver.execute_script(
        """
        const table = document.getElementById(arguments[0]);
        const heads = Array.from(table.tHead.rows[0].cells).map(c => c.textContent.trim());
        const index = heads.indexOf(arguments[1]);
        if (index < 0) throw new Error('no column ' + arguments[1]);
        return Array.from(table.tBodies[0].rows).map(
            r => r.cells[index].getAttribute('data-sort') ?? r.cells[index].textContent.trim());
        """,
        table_id,
        header,
    )


def click_header(driver, table_id: str, header: str) -> None:
    for th in driver.find_elements("css selector", f"#{table_id} thead th"):
        if th.text.strip().rstrip("▲▼ ").strip() == header:
            th.click()
            return
    raise AssertionError(f"no header {header!r} in #{table_id}")


def numbers(values: list[str]) -> list[float | None]:
    return [float(v) if v not in ("", None) else None for v in values]


def assert_sorts(driver, table_id: str, header: str, must_change: bool = True) -> None:
    """Clicking sorts ascending, clicking again descending; blanks stay last."""
    before = numbers(column_sort_values(driver, table_id, header))
    present = [v for v in before if v is not None]
    blanks = len(before) - len(present)
    assert len(set(present)) > 1, "the column needs distinct values to show a sort"
    click_header(driver, table_id, header)
    ascending = numbers(column_sort_values(driver, table_id, header))
    assert ascending == sorted(present) + [None] * blanks
    if must_change:  # the fixture's tables are not in this order to begin with
        assert ascending != before
    click_header(driver, table_id, header)
    descending = numbers(column_sort_values(driver, table_id, header))
    assert descending == sorted(present, reverse=True) + [None] * blanks


@pytest.fixture(scope="module")
def fixture_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    result = CliRunner().invoke(
        cli,
        ["report", str(DATA / "machine_a"), str(DATA / "machine_b"), "--out", str(out)]
        + ["--format", "html"],
    )
    assert result.exit_code == 0, result.output
    return out / "leaderboard.html"


@needs_chromium
def test_page_loads_without_console_errors_and_sorts(browser, fixture_page, tmp_path):
    open_page(browser, fixture_page)
    assert browser.title == "kdbench leaderboard"
    assert console_errors(browser) == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
    )
    assert len(images) == 4 and all(done and width > 100 for done, width in images)

    # Rows arrive sorted by accuracy; sort the first pair by the paired difference, then back.
    assert_sorts(browser, "board-0", "Δ vs ce (paired)")
    assert_sorts(browser, "board-0", "top-1 %")
    methods = browser.execute_script(
        "return Array.from(document.querySelectorAll('#board-0 tbody tr'))"
        ".map(r => r.getAttribute('data-method') + ':' + r.getAttribute('data-kind'));"
    )
    assert methods[-1] == "crd:measured"  # a failed method has no value: it stays last
    assert_sorts(browser, "cross-pair", "avg rank")
    click_header(browser, "board-0", "method")
    names = column_sort_values(browser, "board-0", "method")
    assert names == sorted(names, key=str.lower)
    assert console_errors(browser) == []

    shot = tmp_path / "leaderboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


# Every figure drawn into a canvas: how many pixels have exactly each method's colour.
PIXELS = """
const figures = Array.from(document.querySelectorAll('figure'));
const all = {};
figures.forEach(f => Object.assign(all, JSON.parse(f.getAttribute('data-colors'))));
const rgb = {};
for (const [m, hex] of Object.entries(all)) {
  rgb[m] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
}
return figures.map(f => {
  const img = f.querySelector('img');
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = {};
  for (const m in rgb) counts[m] = 0;
  for (let i = 0; i < data.length; i += 4) {
    for (const [m, c] of Object.entries(rgb)) {
      if (data[i] === c[0] && data[i + 1] === c[1] && data[i + 2] === c[2]) counts[m]++;
    }
  }
  return {alt: img.alt, colors: JSON.parse(f.getAttribute('data-colors')), counts: counts};
});
"""


@needs_chromium
def test_each_method_has_one_colour_across_every_figure(browser, fixture_page, tmp_path):
    """A method is drawn in the same colour in every figure, no two methods share one, and
    a figure shows the colours of its own methods only (so no colour means 'best')."""
    open_page(browser, fixture_page)
    figures = browser.execute_script(PIXELS)
    assert len(figures) == 4
    colour: dict[str, str] = {}
    for figure in figures:
        for method, value in figure["colors"].items():
            assert colour.setdefault(method, value) == value, (method, figure["alt"])
    assert len(set(colour.values())) == len(colour) >= 4
    for figure in figures:
        drawn = set(figure["colors"])
        assert drawn, figure["alt"]
        for method, count in figure["counts"].items():
            if method in drawn:
                assert count >= 20, (method, figure["alt"])  # at least a legend marker
            else:
                assert count == 0, (method, figure["alt"])
    bars = [f for f in figures if f["alt"].startswith("top-1 per method")]
    assert len(bars) == 2 and set(bars[0]["colors"]) != set(bars[1]["colors"])
    shot = tmp_path / "figures.png"
    browser.execute_script("document.querySelector('figure').scrollIntoView();")
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


@needs_chromium
def test_wide_tables_scroll_inside_the_page(browser, fixture_page):
    open_page(browser, fixture_page)
    browser.set_window_size(700, 1000)
    widths = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.querySelector('#board-0').parentElement.scrollWidth,"
        " document.querySelector('#board-0').parentElement.clientWidth];"
    )
    page_width, view, table_width, box = widths
    assert page_width <= view  # the page itself never scrolls sideways
    assert table_width > box  # the wide table scrolls inside its box


@needs_chromium
def test_console_errors_are_caught(browser, tmp_path):
    """The error check above is real: a page whose script throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><table class='sortable'></table>"
        "<script>throw new Error('deliberate failure');</script></body></html>"
    )
    open_page(browser, page)
    assert any("deliberate failure" in message for message in console_errors(browser))
