"""The reproducibility statement at the end of every page: what ran, where, and how to run it again.

A chapter starts a :class:`ChapterRun` in its first code cell and glues
:meth:`ChapterRun.statement` in its last one, so the statement can say how long the chapter took.
The statement names the profile and the data, the device, the versions of the packages the
numbers depend on, the git commit of the code (and whether the working tree had uncommitted
changes), the build date, the chapter's wall time, and the papermill command that re-executes
the chapter with the same parameters (only those that differ from the defaults are spelled
out). It never prints a path of the building machine: a dataset folder given on the command
line appears as a placeholder.

Example:
    >>> run = ChapterRun.start("robustness", {"profile": "smoke", "device": "cpu", "seeds": [6]})
    >>> run.changed
    {'profile': 'smoke', 'device': 'cpu', 'seeds': [6]}
    >>> print(run.command())
    .venv/bin/papermill book/robustness.ipynb _build/source/robustness.ipynb \\
        -p profile smoke -p device cpu -p seeds '[6]'
    >>> text = run.statement(now=run.started + 12.5)
    >>> text.splitlines()[:2]
    ['profile', ': `smoke`, the synthetic corpus']
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .experiments import PARAMETERS
from .runtime import resolve_device
from .errors import DataLayoutError

#: The packages whose versions the statement lists (those that decide the numbers and the site).
PACKAGES = ("mer-lib", "torch", "torchaudio", "numpy", "scipy", "pandas", "captum", "jupyter-book")
#: Parameters whose value is a path on the building machine: shown as a placeholder.
PATH_PARAMETERS = {"data": "/path/to/datasets", "reference_logs": "/path/to/original/runs"}
#: Values of ``data`` that are not paths.
_NOT_A_PATH = {"synthetic"}


def changed_parameters(namespace: dict) -> dict:
    """The chapter parameters in ``namespace`` whose values differ from their declared defaults.

    ``profile`` and ``device`` are always included: a reader re-running the page should see
    which profile and device produced it.

    Example:
        >>> changed_parameters({"profile": "quick", "device": "auto", "epsilon": 0.001, "seeds": None})
        {'profile': 'quick', 'device': 'auto'}
    """
    out = {}
    for p in PARAMETERS:
        if p.name not in namespace:
            continue
        value = namespace[p.name]
        if p.name in ("profile", "device") or value != p.default:
            out[p.name] = value
    return out


def _literal(name: str, value) -> str:
    """``value`` as papermill's ``-p`` takes it: strings raw, paths as placeholders, lists as literals."""
    if name in PATH_PARAMETERS and isinstance(value, str) and value not in _NOT_A_PATH:
        return PATH_PARAMETERS[name]
    if isinstance(value, str):
        return value
    return repr(value).replace("'", '"')


def package_versions(names=PACKAGES) -> dict[str, str]:
    """``{distribution: version}`` for each of ``names`` (``"not installed"`` where absent)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(folder: str | Path | None = None) -> str:
    """The short commit of the repository holding ``folder`` (default: this package), with
    ``"+ uncommitted changes"`` when the working tree differs; ``"not a git checkout"`` otherwise."""
    folder = Path(folder or Path(__file__).parent)
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"{commit} + uncommitted changes" if dirty else commit


def device_description(device: str = "auto") -> str:
    """The device the chapter's tensors ran on, in words (GPU name, or CPU with its thread count)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(dev)}"
    return f"CPU ({torch.get_num_threads()} threads)"


@dataclass(frozen=True)
class ChapterRun:
    """One execution of one chapter: its name, its non-default parameters and its start time."""

    chapter: str
    changed: dict = field(default_factory=dict)
    started: float = 0.0
    started_utc: str = ""

    @classmethod
    def start(cls, chapter: str, namespace: dict) -> "ChapterRun":
        """Begin timing ``chapter``; ``namespace`` holds its parameters (the notebook's ``globals()``)."""
        now = _dt.datetime.now(_dt.timezone.utc)
        return cls(chapter, changed_parameters(namespace), time.time(), now.strftime("%Y-%m-%d %H:%M UTC"))

    def command(self) -> str:
        """The papermill command that re-executes the chapter with these parameters."""
        args = " ".join(f"-p {name} {shlex.quote(_literal(name, value))}" for name, value in self.changed.items())
        return (f".venv/bin/papermill book/{self.chapter}.ipynb _build/source/{self.chapter}.ipynb \\\n"
                f"    {args}").rstrip()

    def statement(self, now: float | None = None) -> str:
        """The statement in MyST Markdown: a definition list (what: value) and the re-run command."""
        seconds = (time.time() if now is None else now) - self.started
        profile = self.changed.get("profile", "quick")
        data = self.changed.get("data", "synthetic")
        data = "the synthetic corpus" if data == "synthetic" else "real data (a datasets folder)"
        versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
        rows = [("profile", f"`{profile}`, {data}"),
                ("device", device_description(self.changed.get("device", "auto"))),
                ("packages", versions),
                ("code", f"git commit `{git_state()}`"),
                ("executed", self.started_utc),
                ("wall time of this page", f"{seconds:.0f} s"
                 " (everything already in the run store was loaded, not recomputed)")]
        listing = "\n\n".join(f"{k}\n: {v}" for k, v in rows)       # a MyST definition list
        return (f"{listing}\n\nTo execute this page again with the same parameters, then rebuild the site "
                f"(add `-p name value` to change one):\n\n```bash\n{self.command()}\nmake site\n```")


def citation_bibtex(cff: str | Path) -> str:
    """BibTeX entries for the project and the works its ``CITATION.cff`` references (one source for
    the front page's "how to cite").

    Example:
        >>> root = Path(__file__).resolve().parents[1]
        >>> text = citation_bibtex(root / "CITATION.cff")
        >>> text.startswith("@software{mer_robustness,") and "@inproceedings{hoedt2025" in text
        True
    """
    import yaml   # lazy: a book dependency


    path = Path(cff)
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataLayoutError(f"cannot read the citation file {path.name}: {exc}") from None

    def people(entries):
        return " and ".join(e["name"] if "name" in e and "family-names" not in e else
                            f"{e['family-names']}, {e['given-names']}" for e in entries)

    def entry(kind, key, fields):
        body = ",\n".join(f"  {k:<9} = {{{v}}}" for k, v in fields.items() if v)
        return f"@{kind}{{{key},\n{body},\n}}"

    year = str(meta.get("date-released", ""))[:4]
    out = [entry("software", "mer_robustness", {
        "title": " ".join(str(meta["title"]).split()), "author": "{" + people(meta["authors"]) + "}",
        "year": year, "version": meta.get("version"), "note": "Jupyter Book and the PyTorch library mer\\_lib"})]
    for ref in meta.get("references", []):
        first = ref["authors"][0].get("family-names", "ref").lower()
        title = ref["title"]
        out.append(entry("inproceedings", f"{first}{ref.get('year', '')}{title.split()[0].lower()}", {
            "title": title, "author": people(ref["authors"]), "booktitle": ref.get("collection-title"),
            "year": ref.get("year"), "note": ref.get("repository-code")}))
    return "\n\n".join(out)
