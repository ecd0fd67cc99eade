"""The built book in a real browser (headless Chromium): every page loads without console errors and with
all its images, every gallery page the galleries page links to loads and sorts, and search finds "MIS" and a
gallery card by its id. Screenshots go to
_build/screenshots/."""
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from notebooks import ROOT, TIMEOUT, toc_files

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# console messages of the theme and of Sphinx that are not errors of the book
KNOWN = ("favicon.ico",                                        # no favicon configured
         "Identifier 'THEBE_JS_URL' has already been declared",   # sphinx-thebe loaded twice by sphinx-book-theme 1.x
         "Got invalid theme mode",                                 # pydata-sphinx-theme before a mode is stored
         "ResizeObserver loop",
         "mathjax@3/es5/tex-mml-chtml.js - Failed to load resource: net::ERR_NAME_NOT_RESOLVED")  # MathJax's CDN, offline

pytestmark = [pytest.mark.book, pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs the Debian packages "
              "chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run installs them)")]


def open_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(html: Path):
    """A local HTTP server of the built HTML (as a reader's static host would serve it)."""
    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def page_problems(driver, url: str) -> list[str]:
    """Console errors (other than known ones) and images that did not load, on the page at `url`."""
    driver.get(url)
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
    broken = driver.execute_script("return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                   ".map(i => i.src.slice(0, 80));")
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not any(k in e["message"] for k in KNOWN)]
    return [f"console: {e}" for e in errors] + [f"image not loaded: {b}" for b in broken]


def search(driver, base: str, query: str) -> list[str]:
    """The result links of the book's search page for `query`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(f"{base}/search.html?q={query}")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results p.search-summary"))
    return [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a")]


def gallery_pages(driver, url: str) -> list[str]:
    """The gallery pages (pages of their own, under galleries/) the galleries page at `url` links to."""
    from selenium.webdriver.common.by import By
    driver.get(url)
    links = [a.get_attribute("href").split("#")[0] for a in driver.find_elements(By.CSS_SELECTOR, "a[href*='galleries/']")]
    return sorted(set(links))


def check_gallery(driver, url: str) -> str:
    """Sort the first gallery of the gallery page at `url` by II, then by index; return the id of its first card."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    driver.get(url)
    menu = driver.find_element(By.CSS_SELECTOR, "select[data-gallery]")
    box = driver.find_element(By.ID, menu.get_attribute("data-gallery"))
    for key, descending in (("ii", True), ("index", False)):
        Select(menu).select_by_value(key)
        values = [float(c.get_attribute(f"data-{key}")) for c in box.find_elements(By.CSS_SELECTOR, ".sp-card")]
        assert len(values) > 1 and values == sorted(values, reverse=descending), f"the gallery did not sort by {key}"
    return box.find_element(By.CSS_SELECTOR, ".sp-card").get_attribute("id")


def check_book(html: Path, pages: list[str], shots: Path, gallery: str | None) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    server, driver = serve(html), open_browser()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        problems = {}
        for page in pages:
            found = page_problems(driver, f"{base}/{page}.html")
            driver.execute_script("window.scrollTo(0, 0);")
            driver.save_screenshot(str(shots / f"{page.replace('/', '_')}.png"))
            if found:
                problems[page] = found
        assert not problems, f"pages with problems: {problems}"
        assert search(driver, base, "MIS"), "search finds nothing for MIS"
        if gallery:
            linked = gallery_pages(driver, f"{base}/{gallery}.html")
            assert len(linked) >= 2, f"the galleries page links to {linked}, not to its gallery pages"
            problems = {page: found for page in linked if (found := page_problems(driver, page))}
            assert not problems, f"gallery pages with problems: {problems}"
            driver.save_screenshot(str(shots / "gallery_page.png"))
            card = check_gallery(driver, linked[0])
            assert any(gallery in link for link in search(driver, base, card)), f"search does not find the card {card}"
    finally:
        driver.quit()
        server.shutdown()


def test_book_in_a_browser():
    from superpos.book import build_book
    html = build_book(ROOT, timeout=TIMEOUT).parent
    pages = toc_files(ROOT)
    check_book(html, pages, ROOT / "_build" / "screenshots", "nbs/galleries" if "nbs/galleries" in pages else None)


def test_math_renders_offline(tmp_path):
    """With django-static-mathjax installed, an equation is typeset by the MathJax the book ships (no network)."""
    pytest.importorskip("mathjax")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from sphinx.cmd.build import build_main
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text('extensions = ["sphinx.ext.autodoc", "superpos.book"]\n')
    (src / "index.rst").write_text("Title\n=====\n\n.. math::\n\n   e^{i\\pi} + 1 = 0\n")
    assert build_main(["-q", "-b", "html", str(src), str(tmp_path / "html")]) == 0
    server, driver = serve(tmp_path / "html"), open_browser()
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container mjx-math"))
        assert driver.execute_script("return window.MathJax && MathJax.version").startswith("3.")
        requests = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name);")
        assert not [r for r in requests if "jsdelivr" in r], "MathJax came from its CDN"
    finally:
        driver.quit()
        server.shutdown()
