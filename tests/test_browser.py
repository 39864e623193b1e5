"""The study as a reader sees it: Snakemake's HTML report and the rendered Quarto site, opened
in Chromium (Debian's, driven by Playwright) from a local web server on 127.0.0.1.

Every figure must have drawn, every table must show, the console must stay free of errors and
no request may leave the local host. Screenshots go to ``results/screenshots/`` of this
checkout (``report-*.png``, ``site-*.png``; of the smoke study).

Skipped, with the reason shown, where Playwright or Chromium is missing (``apt-get install
chromium``; Playwright's own browser download is not used) and, for the site, where Quarto is
not installed, so that the smoke study has no rendered ``results/site/``.
"""

from __future__ import annotations

import csv
import functools
import http.server
import importlib
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from smoke import SMOKE, snakemake

ROOT = Path(__file__).resolve().parent.parent
ANALYSES = ("likelihood", "high_frequency", "anomaly", "cost", "latents")
SCREENSHOTS = ROOT / "results" / "screenshots"
REPORT = "results/report.html"  # where the README's main command writes Snakemake's report
TIMEOUT_MS = 60_000  # a shared 2-core machine under load draws slowly


def declared(kind: str) -> list[tuple[str, str]]:
    """(analysis, stem) of every table or figure the analyses declare (TABLES, FIGURES)."""
    attribute = {"tables": "TABLES", "figures": "FIGURES"}[kind]
    return [
        (a, stem) for a in ANALYSES for stem in getattr(importlib.import_module(f"vaeflow.analysis.{a}"), attribute)
    ]


# --- captions: no browser needed -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tables", "figures"])
def test_every_declared_table_and_figure_has_a_report_caption(kind):
    folder = ROOT / "workflow" / "report" / kind
    stems = {stem for _, stem in declared(kind)}
    captions = {p.stem for p in folder.glob("*.rst")}
    assert stems - captions == set(), f"write a caption for each in {folder}"
    assert captions - stems == set(), f"captions in {folder} for no declared {kind[:-1]}"
    for stem in stems:
        text = (folder / f"{stem}.rst").read_text(encoding="utf-8")
        if kind == "tables":  # the caption shows the table itself, from its CSV
            assert f":file: results/tables/{stem}.csv" in text, stem
        assert len(text.split()) > 15, f"{stem}: say what it shows"


# --- the browser ---------------------------------------------------------------------------


def chromium_executable() -> str | None:
    """Debian's chromium (or $CHROMIUM)."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install -e '.[test]'")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium, or set CHROMIUM to its binary)")
    with sync_playwright() as playwright:
        # Playwright's own browser download is not used: it drives the system's Chromium
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()


class LocalServer:
    """A directory served on 127.0.0.1 (a thread of http.server), quietly."""

    def __init__(self, directory: Path):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        self.directory = directory
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
        )
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Visit:
    """One page in a fresh browser context that records every request and every console error;
    a request to any other host is recorded and refused, so the test never leaves the machine."""

    def __init__(self, browser, origin: str):
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("requestfailed", lambda request: self.errors.append(f"failed: {request.url} {request.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))

    def _console(self, message):
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')[:100]})")

    def _route(self, route):
        if self.is_local(route.request.url):
            route.continue_()
        else:
            route.abort()

    def is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return f"{parts.scheme}://{parts.netloc}" == self.origin

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if not self.is_local(url)]

    def assert_clean(self):
        assert self.foreign_requests() == [], "requests to other hosts"
        assert self.errors == [], "console errors"

    def close(self):
        self.context.close()


# In the page: whether an <img> has loaded a picture, and whether a chart has drawn marks.
IMG_DRAWN = "img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0"
CHART_DRAWN = """el => {
    // vega draws into svg.marks or canvas.marks (other svgs may be vega-embed's menu icon)
    const drawing = el.querySelector('.marks') || el.querySelector('svg, canvas');
    if (!drawing) return false;
    if (drawing.tagName.toLowerCase() === 'svg') return drawing.querySelectorAll('g[class*="mark-"] > *').length > 0;
    const canvas = drawing;
    if (!canvas.width || !canvas.height) return false;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) return true;
    return false;
}"""


def not_drawn(page) -> list[str]:
    """Every figure on the page that has not drawn: an <img> that did not load a picture, an
    inline <svg> with nothing in it, a Vega chart (class ``vega-chart``) without marks."""
    return page.evaluate(
        "() => { const imgDrawn = " + IMG_DRAWN + ", chartDrawn = " + CHART_DRAWN + ", bad = [];"
        """
        document.querySelectorAll('.vega-chart').forEach(el => { if (!chartDrawn(el)) bad.push('chart #' + el.id); });
        document.querySelectorAll('img').forEach(img => {
            if (!imgDrawn(img)) bad.push('img ' + (img.getAttribute('src') || '').slice(0, 80)); });
        document.querySelectorAll('svg').forEach(svg => {
            if (!svg.closest('.vega-chart')
                && !svg.querySelector('path, rect, circle, ellipse, line, polygon, polyline, image, text, use'))
                bad.push('empty svg ' + (svg.id || svg.getAttribute('class') || ''));
        });
        return bad;
    }"""
    )


def screenshot(page, name: str, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def settle(page, condition: str) -> None:
    """Wait up to TIMEOUT_MS for a condition in the page; the assertions after it say what failed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition)
    except PlaywrightTimeout:
        pass


def test_the_checks_fail_on_a_broken_figure(browser, tmp_path):
    """The figure checks are real: a broken SVG, a missing image and an empty chart are caught."""
    good = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    (tmp_path / "good.svg").write_text(good)
    (tmp_path / "broken.svg").write_text(good[:40])
    (tmp_path / "page.html").write_text(
        '<img id="good" src="good.svg"><img id="broken" src="broken.svg"><img id="missing" src="nothing.svg">'
        '<div class="vega-chart" id="empty"></div>'
        '<div class="vega-chart" id="drawn"><svg><g class="mark-rect"><path d="M0,0h5v5z"/></g></svg></div>'
    )
    server = LocalServer(tmp_path)
    visit = Visit(browser, server.origin)
    try:
        visit.page.goto(f"{server.origin}/page.html", wait_until="load")
        bad = not_drawn(visit.page)
        assert bad == ["chart #empty", "img broken.svg", "img nothing.svg"], bad
        assert any("nothing.svg" in error for error in visit.errors)  # the 404 reaches the console
        visit.page.evaluate("fetch('http://example.org/').catch(() => null)")
        visit.page.wait_for_timeout(200)
        assert visit.foreign_requests() == ["http://example.org/"]
    finally:
        visit.close()
        server.close()


# --- Snakemake's report ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(browser, request) -> Path:
    """The smoke study's Snakemake report, as the README's main command writes it. The smoke
    study is asked for only once a browser exists, so that a missing one skips at once."""
    project = request.getfixturevalue("smoke_study")
    path = project / REPORT
    if not path.is_file():  # the smoke study ran without --report
        snakemake(project, "--report", REPORT, *SMOKE)
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def report_page(browser, report):
    server = LocalServer(report.parent)
    visit = Visit(browser, server.origin)
    visit.page.goto(f"{server.origin}/{report.name}", wait_until="load")
    # the report is a React app; it hides its loading screen once it has started
    visit.page.wait_for_function(
        "typeof app !== 'undefined' && document.querySelector('#loading-screen').style.display === 'none'"
    )
    yield visit
    visit.close()
    server.close()


NAV = "nav.h-screen"  # the report's side panel: menu, result lists, result info
SHOWN_IMAGE = "#app div.grow > div.p-3 > img"  # the figure shown beside it


def open_results(page, category: str, subcategory: str):
    """Through the menu, as a reader does: home, the analysis under Results, then Tables or
    Figures. Returns the rows of the list of results (one per table or figure)."""
    nav = page.locator(NAV)
    nav.locator("a").first.wait_for()
    page.evaluate("app.setView({navbarMode: 'menu'})")  # the home button of the breadcrumbs
    nav.get_by_text(category, exact=True).click()
    nav.get_by_text(subcategory, exact=True).click()
    rows = nav.locator("table tbody tr")
    rows.first.wait_for()
    return rows


def row_name(row) -> str:
    return row.locator("td").first.inner_text().strip()


@pytest.mark.workflow
def test_report_lists_every_table_and_figure_by_analysis(report_page):
    page = report_page.page
    results, categories = page.evaluate("results"), page.evaluate("categories")
    expected = {f"results/tables/{stem}.csv" for _, stem in declared("tables")}
    expected |= {f"results/figures/{stem}.svg" for _, stem in declared("figures")}
    assert set(results) == expected
    for path, entry in results.items():
        assert entry["caption"].strip(), f"{path} has no caption"
        # docutils marks what it could not resolve (a bad link, a missing file) and carries on
        assert "system-message" not in entry["caption"] and "problematic" not in entry["caption"], path
    # one category per analysis, its tables and its figures in subcategories
    assert len(categories) == len(ANALYSES)
    for kind, suffix in (("tables", "csv"), ("figures", "svg")):
        for _, stem in declared(kind):
            placed = [
                (c, s)
                for c, subs in categories.items()
                for s, files in subs.items()
                if f"results/{kind}/{stem}.{suffix}" in files
            ]
            assert len(placed) == 1 and placed[0][1] == kind.capitalize(), (stem, placed)
    # the study's description and the rule graph open the report; Statistics has two charts
    assert page.get_by_role("heading", name="VAEs and normalizing flows").first.is_visible()
    wait_drawn(page, "#rulegraph")
    screenshot(page, "report-start")
    page.locator(NAV).get_by_text("Statistics", exact=True).click()
    for chart in ("#runtimes", "#timeline"):
        wait_drawn(page, chart)
    screenshot(page, "report-statistics")
    report_page.assert_clean()


def wait_drawn(page, selector: str) -> None:
    """Wait until the Vega chart at ``selector`` (SVG or canvas, as vega-embed chose) has marks."""
    drawn = f"(el => el !== null && ({CHART_DRAWN})(el))(document.querySelector({selector!r}))"
    settle(page, drawn)
    assert page.evaluate(drawn), f"the chart {selector} did not draw"


@pytest.mark.workflow
def test_report_draws_every_figure(report_page):
    page = report_page.page
    results, categories = page.evaluate("results"), page.evaluate("categories")
    drawn = []
    for category, subcategories in categories.items():
        rows = open_results(page, category, "Figures")
        assert sorted(f"results/figures/{row_name(row)}.svg" for row in rows.all()) == sorted(subcategories["Figures"])
        for row in rows.all():
            stem = row_name(row)
            row.locator("a").first.click()  # the eye: show the figure
            uri = results[f"results/figures/{stem}.svg"]["data_uri"]
            page.wait_for_function(
                "([selector, uri]) => { const img = document.querySelector(selector); return img && img.src === uri; }",
                arg=[SHOWN_IMAGE, uri],
            )
            settle(page, f"document.querySelector({SHOWN_IMAGE!r}).complete")
            assert page.locator(SHOWN_IMAGE).evaluate(IMG_DRAWN), f"{stem}.svg did not draw"
            if not drawn:
                screenshot(page, f"report-figure-{stem}")
            drawn.append(stem)
    assert sorted(drawn) == sorted(stem for _, stem in declared("figures"))
    assert not_drawn(page) == []
    report_page.assert_clean()


@pytest.mark.workflow
def test_report_shows_every_table_in_its_caption(report_page, report):
    page = report_page.page
    shown = []
    for category, subcategories in page.evaluate("categories").items():
        rows = open_results(page, category, "Tables")
        stems = [row_name(row) for row in rows.all()]
        assert sorted(f"results/tables/{stem}.csv" for stem in stems) == sorted(subcategories["Tables"])
        for i, stem in enumerate(stems):
            rows = open_results(page, category, "Tables")
            assert row_name(rows.nth(i)) == stem
            rows.nth(i).locator("a").nth(1).click()  # (i): the result's description
            caption = page.locator(f"{NAV} .prose")
            caption.wait_for()
            assert f"results/tables/{stem}.csv" in caption.inner_text()
            with open(report.parent / f"tables/{stem}.csv", encoding="utf-8", newline="") as f:
                records = list(csv.reader(f))
            table = caption.locator("table")
            assert table.count() == 1, stem
            assert [cell.strip() for cell in table.locator("thead th").all_inner_texts()] == records[0], stem
            body = table.locator("tbody tr")
            assert body.count() == len(records) - 1, stem
            assert [cell.strip() for cell in body.first.locator("td").all_inner_texts()] == records[1], stem
            assert table.is_visible()
            if not shown:
                screenshot(page, f"report-table-{stem}")
            shown.append(stem)
    assert sorted(shown) == sorted(stem for _, stem in declared("tables"))
    report_page.assert_clean()


# --- the Quarto website ----------------------------------------------------------------------


def site_pages() -> list[str]:
    """The pages the site renders, from report/_quarto.yml."""
    project = yaml.safe_load((ROOT / "report" / "_quarto.yml").read_text(encoding="utf-8"))
    return [Path(page).with_suffix(".html").name for page in project["project"]["render"]]


@pytest.fixture(scope="module")
def site(request):
    """The smoke study's rendered site, served on 127.0.0.1."""
    from vaeflow.site.quarto import quarto_available

    if not quarto_available():  # known before the smoke study is built: skip at once
        pytest.skip("Quarto is not installed, so the smoke study renders no site (results/site/) to open")
    request.getfixturevalue("browser")  # skips where there is none, before the smoke study is built
    directory = request.getfixturevalue("smoke_study") / "results" / "site"
    assert (directory / "index.html").is_file(), "Quarto is installed but the smoke study rendered no site"
    server = LocalServer(directory)
    yield server
    server.close()


@pytest.mark.workflow
def test_site_pages_are_the_project_pages(site):
    assert sorted(p.name for p in Path(site.directory).glob("*.html")) == sorted(site_pages())


@pytest.mark.workflow
@pytest.mark.parametrize("name", site_pages())
def test_site_page_draws_every_chart_offline(site, browser, name):
    visit = Visit(browser, site.origin)
    try:
        page = visit.page
        response = page.goto(f"{site.origin}/{name}", wait_until="networkidle")
        assert response is not None and response.ok, name
        page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })")
        settle(
            page,
            f"Array.from(document.querySelectorAll('.vega-chart')).every({CHART_DRAWN})"
            " && Array.from(document.images).every(img => img.complete)",
        )
        assert not_drawn(page) == [], f"{name}: not drawn (console: {visit.errors})"
        # a table folded in a <details> (the Reproduce page's input checksums) shows once the reader opens it
        page.evaluate("document.querySelectorAll('main details').forEach(d => { d.open = true; })")
        for table in page.locator("main table").all():
            assert table.locator("tr").count() > 1 and table.is_visible(), name
        screenshot(page, f"site-{Path(name).stem}", full_page=True)
        visit.assert_clean()
    finally:
        visit.close()


# --- the site's charts without Quarto ----------------------------------------------------------


def charts_page(site_src: Path, out: Path) -> list[str]:
    """A page holding every chart fragment the staged site shows (what Quarto would paste into
    its pages: the raw-HTML block of each ``.chart.md``), loading the site's own vega bundle."""
    fragments, ids = [], []
    for chart in sorted((site_src / "results/figures").glob("*.chart.md")):
        html = chart.read_text(encoding="utf-8").removeprefix("```{=html}\n").removesuffix("```\n")
        fragments.append(html)
        ids.append("vega-" + chart.name.removesuffix(".chart.md"))
    shutil.copy2(site_src / "vega-bundle.js", out / "vega-bundle.js")
    (out / "charts.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><script src="vega-bundle.js"></script></head><body>'
        + "\n".join(fragments)
        + "</body></html>",
        encoding="utf-8",
    )
    return ids


@pytest.mark.workflow
def test_every_staged_chart_draws_offline_from_the_sites_own_bundle(browser, smoke_study, tmp_path):
    """Where Quarto is absent the site is still staged: every chart fragment it would show draws
    with the bundled vega-embed, with no request to another host, served or opened from disk."""
    ids = charts_page(smoke_study / "results/site-src", tmp_path)
    declared_figures = sorted(f"vega-{stem}" for _, stem in declared("figures"))
    assert sorted(ids) == declared_figures
    server = LocalServer(tmp_path)
    visit = Visit(browser, server.origin)
    try:
        page = visit.page
        page.goto(f"{server.origin}/charts.html", wait_until="load")
        settle(page, f"Array.from(document.querySelectorAll('.vega-chart')).every({CHART_DRAWN})")
        assert not_drawn(page) == [], f"not drawn (console: {visit.errors})"
        visit.assert_clean()
        screenshot(page, "site-charts", full_page=True)
    finally:
        visit.close()
        server.close()
    # straight from disk (file://): the spec is inline, so no fetch is needed
    context = browser.new_context()
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto((tmp_path / "charts.html").as_uri(), wait_until="load")
        settle(page, f"Array.from(document.querySelectorAll('.vega-chart')).every({CHART_DRAWN})")
        assert not_drawn(page) == []
        assert all(url.startswith(("file://", "data:", "blob:")) for url in requests), requests
    finally:
        context.close()


# --- the rendered site as a reader sees it --------------------------------------------------------

READER_CHECKS = """() => {
    const main = document.querySelector('main') || document.body, problems = [];
    const text = main.innerText;
    const nan = text.match(/.{0,40}\\bnan\\b.{0,40}/i);
    if (nan) problems.push('nan shown: ' + nan[0]);
    if (window.innerWidth >= 1000) {  // a desktop: no table row taller than three lines
        main.querySelectorAll('table tr').forEach(row => {
            for (const cell of row.querySelectorAll('td, th')) {
                const style = getComputedStyle(cell);
                let line = parseFloat(style.lineHeight);
                if (!line) line = 1.2 * parseFloat(style.fontSize);
                const height = cell.getBoundingClientRect().height - parseFloat(style.paddingTop)
                    - parseFloat(style.paddingBottom);
                if (height > 3.5 * line) {
                    problems.push(`a table row of ${Math.round(height / line)} lines: ` + row.innerText.slice(0, 80));
                    break;
                }
            }
        });
    } else if (document.documentElement.scrollWidth > window.innerWidth + 1) {  // a phone
        problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px wide`);
    }
    // every chart's marks inside its plotting area (the group whose background rect is the plot)
    main.querySelectorAll('.vega-chart svg.marks').forEach(svg => {
        svg.querySelectorAll('g.role-mark').forEach(group => {
            // data marks only: axes, legends, titles and text annotations (a baseline's label above
            // the plot, an off-scale run's name) may sit outside the plotting area by design
            if (group.closest('.role-axis, .role-legend, .role-title, [class*="role-axis"]')) return;
            if (group.classList.contains('mark-text')) return;
            let cell = group.parentElement;
            while (cell && cell !== svg && !Array.from(cell.children).some(c => c.matches('path.background')))
                cell = cell.parentElement;
            if (!cell || cell === svg) return;
            const box = Array.from(cell.children).find(c => c.matches('path.background')).getBoundingClientRect();
            if (box.width === 0 || box.height === 0) return;
            for (const mark of group.children) {
                if (mark.closest('[clip-path]')) continue;  // clipped to the plot by vega
                const r = mark.getBoundingClientRect();
                if (r.width === 0 && r.height === 0) continue;
                if (r.left < box.left - 2 || r.right > box.right + 2
                    || r.top < box.top - 2 || r.bottom > box.bottom + 2)
                    problems.push(`chart ${svg.closest('.vega-chart').id}: a ${group.getAttribute('class')} mark `
                        + 'outside its plotting area');
            }
        });
    });
    return Array.from(new Set(problems));
}"""


@pytest.mark.workflow
@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("name", site_pages())
def test_site_page_reads_well_at_desktop_and_phone_widths(site, browser, name, width):
    """What a reader needs of every rendered page: no ``nan``, no table row taller than three lines
    on a 1280 px screen, no sideways scrolling of the page on a 390 px phone, every chart's data
    marks inside its plotting area."""
    visit = Visit(browser, site.origin)
    try:
        page = visit.page
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{site.origin}/{name}", wait_until="networkidle")
        settle(page, f"Array.from(document.querySelectorAll('.vega-chart')).every({CHART_DRAWN})")
        problems = page.evaluate(READER_CHECKS)
        screenshot(page, f"site-{Path(name).stem}-{width}", full_page=True)
        assert problems == [], f"{name} at {width} px"
    finally:
        visit.close()


@pytest.mark.workflow
def test_the_abstract_shows_the_variables_it_quotes(site, browser, smoke_study):
    """Each ``{{< var >}}`` of the landing page appears on the rendered page with the value the
    study's variables give it (as staged for the site: floats as decimals)."""
    import re

    staged = smoke_study / "results" / "site-src" / "_variables.yml"
    variables = yaml.safe_load(staged.read_text(encoding="utf-8"))
    keys = re.findall(r"\{\{< var ([\w.]+) >\}\}", (ROOT / "report" / "index.qmd").read_text(encoding="utf-8"))
    assert keys
    visit = Visit(browser, site.origin)
    try:
        visit.page.goto(f"{site.origin}/index.html", wait_until="networkidle")
        shown = " ".join(visit.page.locator("main").inner_text().split())
    finally:
        visit.close()
    # Quarto's smart punctuation prints a straight apostrophe or quote as a typographic one
    typographic = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
    shown = shown.translate(typographic)
    for key in keys:
        value = functools.reduce(lambda node, part: node[part], key.split("."), variables)
        assert " ".join(str(value).split()) in shown, key
