"""The book end to end: every chapter executes in the smoke profile, the site builds without
warnings, the README's papermill re-execution works as written, and the built pages load in
headless Chromium with their figures and rendered math."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _stored_files(store: Path) -> dict[str, int]:
    """Every file of the store (locks aside) with its modification time."""
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(scope="session")
def book_store(tmp_path_factory):
    """The smoke store after ``python -m mer_lib run --engine ray`` (in-process without Ray)."""
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "MER_HOME": str(out / "runs"), "PYTHONUNBUFFERED": "1"}
    try:
        import ray  # noqa: F401
        engine = "ray"
    except ImportError:
        engine = "inprocess"
    proc = subprocess.run([sys.executable, "-m", "mer_lib", "run", "--engine", engine, "--profile", "smoke",
                           "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return {"out": out, "env": env, "engine": engine, "before": _stored_files(out / "runs")}


@pytest.fixture(scope="session")
def built_book(book_store):
    """Run the main command's driver in the smoke profile into a temporary folder, on the
    store the runner filled; record what the book added to the store."""
    out = book_store["out"]
    proc = subprocess.run(
        [sys.executable, "-m", "mer_lib.bookbuild", "--profile", "smoke", "--device", "cpu",
         "--build-dir", str(out / "_build")],
        cwd=ROOT, env=book_store["env"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    after = _stored_files(out / "runs")
    book_store["added"] = sorted(f for f in after if book_store["before"].get(f) != after[f])
    return out / "_build"


def test_after_the_runner_on_ray_the_book_computes_nothing(book_store, built_book):
    """``run --engine ray --profile smoke`` then the smoke book: the book only loads (no new
    or rewritten model, attack table, measurement table, step timing or cache file in the store).
    The step timings the Explanations and Attributions pages show were taken by the runner's
    cost jobs, last and one at a time."""
    if book_store["engine"] != "ray":
        pytest.skip("Ray is not installed (pip install -e '.[cluster]'); the store was filled in-process")
    assert len(book_store["before"]) > 100, "the runner stored (almost) nothing"
    assert any(f.startswith("step_costs/") for f in book_store["before"]), "the runner took no step timing"
    assert book_store["added"] == []


def _chapters():
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_toc_root_is_index_and_chapters_have_parameters():
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "index"
    for name in _chapters():
        nb = json.loads((ROOT / "book" / f"{name}.ipynb").read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
        assert "profile" in "".join(tagged[0]["source"])
        assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), \
            f"book/{name}.ipynb is stored with outputs"


def test_every_chapter_executed_without_errors(built_book):
    for name in _chapters():
        nb = json.loads((built_book / "source" / f"{name}.ipynb").read_text())
        assert nb["metadata"]["papermill"]["parameters"]["profile"] == "smoke"
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert outputs, f"{name} produced no output"
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        # figures are glued (myst-nb keeps them under papermill's record mime type) for {glue:figure}
        images = [o for o in outputs if any(k.endswith("image/png") for k in o.get("data", {}))]
        assert images, f"{name} has no figure"


def _glued(notebook: Path, name: str) -> str:
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                return out["data"]["application/papermill.record/text/plain"]
    raise AssertionError(f"{notebook.name} glued no {name!r}")


@pytest.fixture(scope="session")
def book_run(built_book):
    """What the build's Robustness chapter reported, read before a test re-executes it."""
    return {"n_trained_now": _glued(built_book / "source" / "robustness.ipynb", "n_trained_now")}


def test_robustness_after_training_computes_no_new_model(book_run):
    assert book_run["n_trained_now"] == "0"


def _readme_papermill_command() -> list[str]:
    """The README's re-execution command, as the shell would split it."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    match = re.search(r"^(\.venv/bin/papermill book/robustness\.ipynb .*?)\nmake site$", text, re.M | re.S)
    assert match, "the README lost its papermill re-execution example"
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_readme_papermill_command_then_site_build_shows_the_new_epsilons(book_run, built_book):
    """The README's exact command through papermill's CLI (smoke profile), then `make site`."""
    cmd = _readme_papermill_command()
    assert cmd[cmd.index("epsilons") + 1] == "[0.0005, 0.002]" and cmd[cmd.index("seeds") + 1] == "[6, 21]"
    cmd[cmd.index("profile") + 1] = "smoke"                                 # the tests' size
    cmd[0] = str(Path(sys.executable).with_name("papermill"))
    cmd[2] = str(built_book / "source" / "robustness.ipynb")
    env = {**os.environ, "MER_HOME": str(built_book.parent / "runs"), "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(cmd, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-6000:]
    nb = json.loads((built_book / "source" / "robustness.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["epsilons"] == "[0.0005, 0.002]"   # a string
    # `make site` runs exactly this
    site = subprocess.run([sys.executable, "-m", "mer_lib.bookbuild", "--site-only",
                           "--build-dir", str(built_book)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert site.returncode == 0, site.stdout[-3000:] + site.stderr[-3000:]
    html = (built_book / "site" / "_build" / "html" / "robustness.html").read_text()
    assert "sweep [0.0005, 0.002]" in html
    assert "10 models (5 trained now)" in html        # seeds 6 and 21: seed 6 came from the book


def test_glued_numbers_reach_the_prose(built_book):
    html = (built_book / "site" / "_build" / "html" / "data.html").read_text()
    assert "The corpus has" in html
    assert "40</span> clips" in html or ">40<" in html, "the clip count was not glued into the text"


def test_every_page_decides_its_comparisons_with_intervals(built_book):
    """Each chapter shows a numbered interval figure and a power note; the front page, executed
    after the chapters, glues the verdicts on the paper's claims; no glue role is left unrendered."""
    html_dir = built_book / "site" / "_build" / "html"
    verdicts = ("supported", "contradicted", "unresolved", "not computable", "partly supported")
    for name in _chapters():
        html = (html_dir / f"{name}.html").read_text()
        assert "{glue" not in html, f"{name}: an unrendered glue role"
        assert "Power.</strong>" in html, f"{name}: no power note"
        assert 'id="fig-' in html and "Fig. " in html, f"{name}: no numbered figure"
    robustness = (html_dir / "robustness.html").read_text()
    assert "The paper’s three claims" in robustness or "The paper's three claims" in robustness
    index = (html_dir / "index.html").read_text()
    assert "Findings of this build" in index and "{glue" not in index
    assert sum(index.count(v) for v in verdicts) >= 3, "the front page states no verdicts"
    nb = json.loads((built_book / "source" / "index.ipynb").read_text())
    assert not [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                if o.get("output_type") == "error"]


@pytest.fixture(scope="session")
def site_url(built_book):
    """Serve the built site on a loopback port for the browser."""
    html = built_book / "site" / "_build" / "html"
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if not shutil.which("apt-get"):
            pytest.skip("Chromium is not installed and this machine has no apt-get to install it: "
                        "the browser test is skipped (install Chromium and run the tests again)")
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
        pytest.skip("chromium not installed (run `make chromium`, or `make test` which does it)")
    return path


def test_data_chapter_loads_in_chromium_with_figures_and_math(site_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(f"{site_url}/data.html", wait_until="load")
        assert "Data" in page.title()
        page.wait_for_function(
            "Array.from(document.images).filter(i => i.src.startsWith('data:') || i.src.includes('_images')).length >= 3 && Array.from(document.images).every(i => i.complete)",
            timeout=30000)
        widths = page.eval_on_selector_all(
            "main img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len([w for w in widths if w > 100]) >= 3, widths
        assert page.locator("audio").count() >= 1
        page.wait_for_selector("span.MathJax", timeout=30000)     # MathJax 2 typeset the formulas
        local_failures = [u for u in failed if u.startswith(site_url)]
        assert not local_failures, local_failures
        page.goto(f"{site_url}/index.html", wait_until="load")
        assert page.locator("a[href='data.html']").count() >= 1
        browser.close()


#: What a page of the built site may not show: a glue role left unrendered, a path of the machine
#: that built it (the run store, the build folder, a home directory).
_MACHINE_PATH = r"(^|[\s'\"(=])/(tmp|home|work|root|Users|var|opt|mnt|private)/"

_LAYOUT_PROBE = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const edge = article.getBoundingClientRect().right + 1;
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const scrolls = el => { for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return p; } return null; };
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                     (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '');
  const overflow = [];
  for (const el of article.querySelectorAll('table, img, figure, .MathJax_Display, .MathJax, div.math')) {
    if (!visible(el)) continue;
    const box = scrolls(el);                      // inside a scroll container: that container must fit
    const r = (box || el).getBoundingClientRect();
    if (r.right > edge) overflow.push(name(el) + ' ends at ' + Math.round(r.right) + ' px > ' + Math.round(edge));
    if (box && box.matches('.pst-scrollable-table-container') && box.scrollWidth > box.clientWidth + 1)
      overflow.push(name(el) + ' needs ' + box.scrollWidth + ' px in a ' + box.clientWidth + '-px column (its caption is cut)');
    if (el.matches('.MathJax_Display, div.math') && el.scrollWidth > el.clientWidth + 1)
      overflow.push(name(el) + ' is cut: ' + el.scrollWidth + ' px of content in ' + el.clientWidth);
  }
  const figures = Array.from(article.querySelectorAll('figure')).filter(visible);
  const uncaptioned = figures.filter(f => !/^Fig\\. \\d+/.test((f.querySelector('figcaption .caption-number') || {}).textContent || ''))
                             .map(name);
  const bare = Array.from(article.querySelectorAll('img')).filter(i => visible(i) && !i.closest('figure')).map(i => i.alt || i.src.slice(0, 40));
  const noalt = figures.filter(f => { const i = f.querySelector('img'); return i && (!i.alt || /\\.(png|svg|jpg)$/.test(i.alt)); }).map(name);
  const tables = Array.from(article.querySelectorAll('table')).filter(visible);
  const untitled = tables.filter(t => !/^Table \\d+/.test((t.querySelector('caption .caption-number') || {}).textContent || ''))
                         .map(t => name(t) + ': ' + (t.innerText || '').slice(0, 60));
  const stray = Array.from(article.querySelectorAll('.cell_output pre')).filter(visible)
                     .map(e => e.innerText.trim()).filter(t => /^['"]?\\|/.test(t)).map(t => t.slice(0, 60));
  const repro = document.getElementById('reproducibility');
  return {overflow, stray, uncaptioned, bare, noalt, untitled, figures: figures.length, tables: tables.length,
          page_width: document.documentElement.scrollWidth, window: window.innerWidth,
          text: document.body.innerText, repro: repro ? repro.innerText : ''};
}"""


def _excerpt_seconds() -> float:
    """Duration of the audio behind one excerpt of the smoke profile (the test book's)."""
    from mer_lib.profiles import get_profile
    from mer_lib.wave_excerpts import excerpt_span

    first, stop, _ = excerpt_span(0, get_profile("smoke").excerpt_frames)
    return (stop - first) / 22050


def test_every_page_reads_like_a_paper_in_chromium(site_url, built_book):
    """At a 1280-px window, on every page: no table, figure or equation runs past the text column
    (nor does any table need its scroll container, which would cut its caption); every figure has a number, a caption and alt
    text; every table a number and a caption; no unrendered glue and no path of the building
    machine; a reproducibility statement with the commit and the papermill command. Screenshots
    of every page are written beside the site (the failure message names the folder)."""
    import re

    from playwright.sync_api import sync_playwright

    shots = built_book / "screenshots"
    shots.mkdir(exist_ok=True)
    problems, counts = [], {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name in ["index", *_chapters()]:
            page.goto(f"{site_url}/{name}.html", wait_until="load")
            page.wait_for_function("!window.MathJax || !MathJax.Hub || (MathJax.Hub.queue.pending === 0 "
                                   "&& MathJax.Hub.queue.running === 0)", timeout=60000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            got = page.evaluate(_LAYOUT_PROBE)
            counts[name] = {"figures": got["figures"], "tables": got["tables"]}
            where = f"{name}.html"
            if name == "listening":       # the audio players load and last as long as an excerpt
                page.wait_for_function("Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)",
                                       timeout=30000)
                durations = page.evaluate("Array.from(document.querySelectorAll('audio')).map(a => a.duration)")
                counts[name]["audio"] = len(durations)
                expected = _excerpt_seconds()
                if len(durations) < 3 or any(abs(d - expected) > 0.01 for d in durations):
                    problems.append(f"{where}: audio players {durations} s, expected >= 3 of {expected:.3f} s")
            problems += [f"{where}: overflow: {o}" for o in got["overflow"]]
            if got["page_width"] > got["window"]:
                problems.append(f"{where}: the page scrolls sideways ({got['page_width']} px > {got['window']})")
            problems += [f"{where}: a table printed as text by a code cell: {t}" for t in got["stray"]]
            problems += [f"{where}: figure without a number and caption: {f}" for f in got["uncaptioned"]]
            problems += [f"{where}: image outside a numbered figure: {f}" for f in got["bare"]]
            problems += [f"{where}: figure without alt text: {f}" for f in got["noalt"]]
            problems += [f"{where}: table without a number and caption: {t}" for t in got["untitled"]]
            if "{glue" in got["text"]:
                problems.append(f"{where}: an unrendered glue role")
            for raw in (":::{", "```{", "{numref}", "{cite"):
                if raw in got["text"]:
                    problems.append(f"{where}: unrendered MyST markup {raw!r} (a fence closed too early?)")
            path = re.search(_MACHINE_PATH, got["text"], flags=re.M)
            if path:
                problems.append(f"{where}: a path of the building machine: …{got['text'][path.start():path.end() + 40]!r}")
            if not ("git commit" in got["repro"] and "papermill" in got["repro"] and "wall time" in got["repro"]):
                problems.append(f"{where}: no reproducibility statement (commit, wall time, papermill command)")
        browser.close()
    (shots / "counts.json").write_text(json.dumps(counts, indent=2))
    assert not problems, f"{len(problems)} layout problem(s) (screenshots in {shots}):\n" + "\n".join(problems)
    assert sum(c["figures"] for c in counts.values()) >= 20 and sum(c["tables"] for c in counts.values()) >= 15, counts
