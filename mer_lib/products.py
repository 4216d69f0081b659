"""Stored per-model tables beyond the attacks, as runner jobs: the registry and what the chapters read.

A :class:`Product` is one kind of stored table of one model: its store folder name, its
identity (what the table is keyed by), the function that reads or computes it
(:func:`mer_lib.store.get_table` underneath: lock, atomic write, checksum, resume) and the
experiment's configurations of it. :data:`PRODUCTS` holds the three the book reads besides the
attacks: the explanation-quality tables (NF, S), the attribution-robustness tables and the
realisability tables of the Listening chapter (one per spectrogram attack mode). A new
measurement is one module with its table function plus one entry here: the entry also says
which models' tables the chapters read (``reads``), so the runner plans and runs them before
any chapter does (:class:`~mer_lib.jobs.TableJob`, :func:`table_plan`).
:func:`extension_attack_plan` says which extension models are attacked.

Example:
    >>> list(PRODUCTS)                      # in the order the book reads them
    ['realisability', 'explanations', 'attributions']
    >>> PRODUCTS["explanations"].folder
    'explanations'
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .attacks.realisability_table import get_realisability, realisability_identity
from .attacks.results import describe
from .attributions.report import attribution_config, attribution_identity, attribution_table
from .errors import ParameterError
from .explain.report import explanation_table, quality_identity
from .extensions import EXPO_OBJECTIVES, RAR_OBJECTIVES, quality_config
from .models import get_variant
from .store import identity_key, table_dir

__all__ = ["Product", "RealisabilityConfig", "PRODUCTS", "get_product", "table_plan", "extension_attack_plan", "table_key",
           "table_folder"]


@dataclass(frozen=True)
class Product:
    """One kind of stored per-model table.

    Attributes:
        folder: its folder under the store (``<store>/<folder>/<model key>/<table key>``).
        identity: ``(model_key, config, split, data_identity) -> dict``, what a table is keyed by.
        table: ``(trained, data, config, *, split, run_dir, device) -> DataFrame`` (stored; computed when missing).
        configs_of: the experiment's configurations of it (``exp -> list``; one table per model and configuration).
        reads: ``(paper model jobs, extension model jobs) -> [(model job, chapter), ...]``: the models
            whose tables the chapters read, each with the first chapter that reads it.
        needs_audio: only for data that hold audio (the excerpts' files).
    """

    folder: str
    identity: Callable
    table: Callable
    configs_of: Callable
    reads: Callable
    needs_audio: bool = False


@dataclass(frozen=True)
class RealisabilityConfig:
    """A realisability table's configuration: the spectrogram ``attack`` whose perturbations are
    turned into audio, on the first ``examples`` clips (None: all)."""

    attack: object
    examples: int | None = None

    @property
    def label(self) -> str:
        """Which table of a model this is (its job's name says it): ``projected eps=0.001``."""
        return describe(self.attack)


def _realisability_table(trained, data, config: RealisabilityConfig, *, split, run_dir, device):
    return get_realisability(trained, data, config.attack, split=split, examples=config.examples,
                             run_dir=run_dir, device=device).table


def _family(job) -> str:
    objective = get_variant(job.variant).objective
    return "expo" if objective in EXPO_OBJECTIVES else "rar" if objective in RAR_OBJECTIVES else "paper"


def _explanations_read(paper_jobs: list, extension_jobs: list) -> list:
    """NF/S of every paper and ExpO model (the c-sweep and its control included) in Explanations;
    the Attributions chapter adds those of the RAR models."""
    return ([(job, "explanations") for job in paper_jobs]
            + [(job, "explanations") for job in extension_jobs if _family(job) == "expo"]
            + [(job, "attributions") for job in extension_jobs if _family(job) == "rar"])


def _attributions_read(paper_jobs: list, extension_jobs: list) -> list:
    """Attribution robustness of the paper models and of the ExpO and RAR models of the
    experiment's default options (the sweep's models are not in that chapter)."""
    return [(job, "attributions") for job in [*paper_jobs, *(j for j in extension_jobs if not j.options)]]


#: The stored measurements besides the attacks, in the order the book reads them.
PRODUCTS: dict[str, Product] = {
    "realisability": Product(
        "realisability", lambda key, cfg, split, data_id: realisability_identity(key, cfg.attack, split, data_id, cfg.examples),
        _realisability_table,
        lambda exp: [RealisabilityConfig(exp.attack_config(m, exp.epsilon), exp.wave_examples) for m in exp.modes],
        reads=lambda paper_jobs, extension_jobs: [(job, "listening") for job in paper_jobs], needs_audio=True),
    "explanations": Product("explanations", quality_identity, explanation_table, lambda exp: [quality_config(exp)],
                            reads=_explanations_read),
    "attributions": Product("attributions", attribution_identity, attribution_table,
                            lambda exp: [attribution_config(exp)], reads=_attributions_read),
}


def get_product(name: str) -> Product:
    """The registered product ``name``; an unknown name is a clear error."""
    if name not in PRODUCTS:
        raise ParameterError(f"unknown product {name!r}; known products: {sorted(PRODUCTS)}")
    return PRODUCTS[name]


def table_key(product: str, model_key: str, config, split: str, data_identity: str) -> str:
    """The key (folder name) of one stored table."""
    return identity_key(get_product(product).identity(model_key, config, split, data_identity))


def table_folder(run_dir: str | Path, product: str, model_key: str, config, split: str, data_identity: str) -> Path:
    """Where one stored table lives (the folder the product's table function writes)."""
    spec = get_product(product)
    return table_dir(run_dir, spec.folder, model_key, spec.identity(model_key, config, split, data_identity))


def table_plan(paper_jobs: list, extension_jobs: list, *, audio: bool = True) -> list[tuple[str, object, str]]:
    """``(product, model job, chapter)`` of every table the chapters read, each once, in book order
    (one table per configuration of the product): each product's ``reads``, in :data:`PRODUCTS`
    order; a product that ``needs_audio`` only when the data hold audio (``audio``)."""
    return [(name, job, chapter) for name, product in PRODUCTS.items() if audio or not product.needs_audio
            for job, chapter in product.reads(paper_jobs, extension_jobs)]


def extension_attack_plan(extension_jobs: list) -> list[tuple[object, str]]:
    """``(model job, chapter)`` of the extension models the chapters attack (projected, at the
    experiment's epsilon): the ExpO and RAR models of the default options."""
    return [(job, "explanations" if _family(job) == "expo" else "attributions")
            for job in extension_jobs if not job.options]
