"""Execute the book's chapters with papermill and build the static site (Jupyter Book 1.x).

The chapter sources in ``book/`` carry no outputs. This module stages a copy of the book in
``_build/source/``, executes each chapter notebook there with papermill (injecting the
``profile``, ``device`` and ``data`` parameters, and any ``-p name value`` you add), and runs
``jupyter-book build`` on the staged copy, so the site shows the executed notebooks.

Every chapter declares the same experiment parameters (:mod:`mer_lib.experiments`), so a
``-p`` value reaches all of them and Table 1 and Figure 3 come from the same models. The
whole experiment is checked before the first chapter starts: an unknown name (one that no
chapter declares) or a malformed value stops the build at once with one line. While a
chapter runs, its progress (what is training, the epochs, the attacks done and to do) is
streamed to the terminal.

Usage (the Makefile's ``make book`` / ``make site`` call this):

    python -m mer_lib.bookbuild --profile quick            # execute every chapter + build
    python -m mer_lib.bookbuild --data /path/to/folder     # the real datasets
    python -m mer_lib.bookbuild --chapters robustness -p epsilons "[0.001, 0.01]"
    python -m mer_lib.bookbuild --site-only                # rebuild from executed chapters

MathJax is served from the site itself (copied from the ``jupyter-server-mathjax`` package),
so formulas render without internet access.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .allocator import keep_large_buffers
from .errors import MerError, ParameterError
from .profiles import PROFILES
from .experiments import Experiment, parameter_cell, parse_parameters


MATHJAX_PARTS = ("MathJax.js", "config", "extensions", "jax/input/TeX", "jax/output/HTML-CSS",
                 "jax/element", "fonts/HTML-CSS/STIX-Web/woff", "localization/en", "LICENSE")


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` that holds ``_toc.yml`` and ``book/``.

    The toc's file names are relative to ``book/``; the staged copy puts ``book/``'s files
    beside ``_config.yml`` and ``_toc.yml``.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "book").is_dir():
            return folder
    raise ParameterError(f"no project root (a folder with _toc.yml and book/) at or above {here}")


def chapters(root: Path) -> list[str]:
    """Chapter files listed in ``_toc.yml`` (relative paths without suffix), notebooks only, in
    execution order: the chapters in toc order, then the root page (it glues their findings)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        names += [c["file"] for c in part.get("chapters", [])]
    names = names[1:] + names[:1]       # the front page summarises the chapters: executed last
    return [n for n in names if (root / "book" / f"{n}.ipynb").is_file()]


def stage(root: Path, staged: Path) -> None:
    """Copy config, toc and every non-notebook book file into ``staged``; add offline MathJax."""
    staged.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, staged / name)
    for src in (root / "book").rglob("*"):
        if src.is_file() and src.suffix != ".ipynb" and ".ipynb_checkpoints" not in src.parts:
            dst = staged / src.relative_to(root / "book")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    import jupyter_server_mathjax   # lazy: the book extra

    # Only what MathJax 2's TeX-AMS-MML_HTMLorMML-full configuration loads. It goes to an
    # html_extra_path folder (copied verbatim to the site), not to _static, whose .js files
    # the theme would add to every page.
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = staged / "_mathjax" / "mathjax"
    if not (target / "MathJax.js").is_file():
        for part in MATHJAX_PARTS:
            src = mathjax / part
            if src.is_dir():
                shutil.copytree(src, target / part, dirs_exist_ok=True)
            else:
                (target / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / part)


def declared_parameters(notebook: Path) -> list[str]:
    """The names assigned in the cell tagged ``parameters`` of ``notebook``."""
    nb = json.loads(notebook.read_text())
    names = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def sync_parameter_cells(root: Path) -> list[str]:
    """Rewrite the ``parameters`` cell of every chapter to :func:`mer_lib.experiments.parameter_cell`.

    Run it (``python -m mer_lib.bookbuild --sync-parameters``) after adding a parameter to
    :data:`mer_lib.experiments.PARAMETERS`; returns the chapters that changed.
    """
    import nbformat   # lazy: the book extra


    changed = []
    for name in chapters(root):
        path = root / "book" / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise ParameterError(f"{path} must have exactly one cell tagged 'parameters', has {len(cells)}")
        if cells[0].source != parameter_cell():
            cells[0].source = parameter_cell()
            nbformat.write(nb, path)
            changed.append(name)
    return changed


def check_parameters(root: Path, names: list[str], params: dict) -> dict:
    """Validate ``params`` for the chapters ``names`` before any runs; return the parsed values.

    Raises ParameterError for a name no chapter declares, and for any value the experiment
    spec rejects (:meth:`mer_lib.experiments.Experiment.from_parameters`).
    """
    declared = set()
    for name in names:
        declared.update(declared_parameters(root / "book" / f"{name}.ipynb"))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ParameterError(f"no chapter declares the parameter(s) {unknown}; they take: "
                             f"{', '.join(sorted(declared))}")
    parsed = parse_parameters(params)
    Experiment.from_parameters(**parsed)
    return parsed


def collapse_parameter_cells(notebook: Path) -> None:
    """Tag the ``parameters`` cell and papermill's ``injected-parameters`` cell ``hide-cell``, so
    the site shows them collapsed (a reader opens them on a click) and a chapter opens on its
    question; where the ``parameters`` cell is tagged ``remove-cell`` (the front page), both go."""
    import nbformat   # lazy: the book extra

    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    # a page that removes its parameters cell (the front page) removes the injected one too
    tag = "remove-cell" if any("remove-cell" in c.metadata["tags"] for c in cells) else "hide-cell"
    for cell in cells:
        if not {"hide-cell", "remove-cell"} & set(cell.metadata["tags"]):
            cell.metadata["tags"].append(tag)
    nbformat.write(nb, notebook)


def execute(root: Path, staged: Path, chapter: str, parameters: dict, log=print,
            position: str = "") -> float:
    """Run one chapter with papermill into the staged book; return the wall time in seconds.

    The kernel's output streams (the runner's progress lines) are copied to this process's
    stdout and stderr while the chapter runs.
    """
    import papermill   # lazy: the book extra

    source = root / "book" / f"{chapter}.ipynb"
    target = staged / f"{chapter}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in parameters.items() if k not in ("profile", "device")}
    log(f"{position}{chapter}: executing (profile {parameters.get('profile')}, device "
        f"{parameters.get('device')}{', ' + str(extra) if extra else ''}) ...", flush=True)
    t0 = time.time()
    tmp = target.with_suffix(".running.ipynb")
    papermill.execute_notebook(str(source), str(tmp), parameters=parameters,
                               cwd=str(source.parent), progress_bar=False, kernel_name="python3",
                               stdout_file=sys.stdout, stderr_file=sys.stderr)
    collapse_parameter_cells(tmp)
    os.replace(tmp, target)
    seconds = time.time() - t0
    log(f"{position}{chapter}: done in {seconds:.0f} s", flush=True)
    return seconds


def build_site(staged: Path, output: Path) -> Path:
    """Run ``jupyter-book build`` (warnings are errors) and return the path of index.html."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(staged),
           "--path-output", str(output), "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    index = output / "_build" / "html" / "index.html"
    if not index.is_file():
        raise subprocess.CalledProcessError(1, cmd, "jupyter-book wrote no index.html")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer_lib.bookbuild", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (default) or a folder with soundtracks/ and midlevel/ (real data)")
    parser.add_argument("--chapters", nargs="*", help="execute only these (e.g. data training)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="chapter parameter, e.g. -p epsilons \"[0.001, 0.01]\" (lists as Python literals)")
    parser.add_argument("--site-only", action="store_true", help="do not execute, only build")
    parser.add_argument("--build-dir", default="_build", help="output folder (default _build)")
    parser.add_argument("--sync-parameters", action="store_true",
                        help="rewrite every chapter's parameters cell from mer_lib.experiments and exit")
    args = parser.parse_args(argv)
    try:
        root = project_root()
        if args.sync_parameters:
            changed = sync_parameter_cells(root)
            print(f"parameters cell rewritten in: {', '.join(changed) or 'no chapter (all up to date)'}")
            return 0
        build = (root / args.build_dir).resolve()
        staged = build / "source"
        os.environ.setdefault("MER_HOME", str(root / "runs"))
        keep_large_buffers()    # inherited by the chapters' kernels (see mer_lib.allocator)
        names = chapters(root)
        wanted = args.chapters or names
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise ParameterError(f"unknown chapter(s) {unknown}; the book has {names}")
        params = {"profile": args.profile, "device": args.device, "data": args.data, **dict(args.param)}
        if not args.site_only:          # before anything is staged or executed
            params = check_parameters(root, [n for n in names if n in wanted], params)
        stage(root, staged)
        times = {}
        t0 = time.time()
        todo = [n for n in names if not args.site_only and n in wanted]
        for name in names:
            if name in todo:
                position = f"[chapter {todo.index(name) + 1}/{len(todo)}] "
                times[name] = execute(root, staged, name, params, position=position)
            elif not (staged / f"{name}.ipynb").is_file():
                if args.site_only or args.chapters:
                    print(f"note: {name} has not been executed yet; the site shows its source")
                shutil.copy2(root / "book" / f"{name}.ipynb", staged / f"{name}.ipynb")
        index = build_site(staged, build / "site")
    except MerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:      # before the catch-all below, which re-raises it
        print(f"error: the site build failed (jupyter-book exited with status {err.returncode}; its "
              f"warnings are above)", file=sys.stderr)
        return 1
    except Exception as err:  # papermill's execution error: name the chapter and the cause
        if type(err).__name__ != "PapermillExecutionError":
            raise
        print(f"error: a chapter failed: {err.ename}: {err.evalue}\n"
              f"  (the partly executed notebook is in {staged}/*.running.ipynb)", file=sys.stderr)
        return 1
    for name, secs in times.items():
        print(f"  {name:30s} {secs:7.1f} s")
    print(f"executed {len(times)} chapter(s) in {time.time() - t0:.0f} s (profile {args.profile})")
    print(f"the book is at {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
