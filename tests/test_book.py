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


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """Run the main command's driver in the smoke profile into a temporary folder."""
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "MER_HOME": str(out / "runs"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mer_lib.bookbuild", "--profile", "smoke", "--device", "cpu",
         "--build-dir", str(out / "_build")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return out / "_build"


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
        images = [o for o in outputs if "image/png" in o.get("data", {})]
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
