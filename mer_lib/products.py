"""Stored per-model tables beyond the attacks, as runner jobs: the registry and what the chapters read.

A :class:`Product` is one kind of stored table of one model: its store folder name, its
identity (what the table is keyed by), the function that reads or computes it
(:func:`mer_lib.store.get_table` underneath: lock, atomic write, checksum, resume) and the
experiment's configuration of it. :data:`PRODUCTS` holds the two the book reads besides the
attacks: the explanation-quality tables (NF, S) and the attribution-robustness tables. A new
measurement is one module with its table function plus one entry here.

:func:`table_plan` says which tables of which models the chapters read, so the runner can plan
and run them before any chapter does (:class:`~mer_lib.jobs.TableJob`), and
:func:`extension_attack_plan` which extension models are attacked.

Example:
    >>> sorted(PRODUCTS)
    ['attributions', 'explanations']
    >>> PRODUCTS["explanations"].folder
    'explanations'
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .attributions.report import attribution_config, attribution_identity, attribution_table
from .errors import ParameterError
from .explain.report import explanation_table, quality_identity
from .extensions import EXPO_OBJECTIVES, RAR_OBJECTIVES, quality_config
from .models import get_variant
from .store import identity_key, is_stored, table_dir

__all__ = ["Product", "PRODUCTS", "get_product", "table_plan", "extension_attack_plan", "table_key",
           "table_folder", "table_is_stored"]


@dataclass(frozen=True)
class Product:
    """One kind of stored per-model table.

    Attributes:
        folder: its folder under the store (``<store>/<folder>/<model key>/<table key>``).
        identity: ``(model_key, config, split, data_identity) -> dict``, what a table is keyed by.
        table: ``(trained, data, config, *, split, run_dir, device) -> DataFrame`` (stored; computed when missing).
        config_of: the experiment's configuration of it (``exp -> config``).
    """

    folder: str
    identity: Callable
    table: Callable
    config_of: Callable


PRODUCTS: dict[str, Product] = {
    "explanations": Product("explanations", quality_identity, explanation_table, quality_config),
    "attributions": Product("attributions", attribution_identity, attribution_table, attribution_config),
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
    return table_dir(run_dir, get_product(product).folder, model_key,
                     get_product(product).identity(model_key, config, split, data_identity))


def table_is_stored(folder: Path) -> bool:
    """True when the table in ``folder`` is complete and intact."""
    return is_stored(folder)


def _family(job) -> str:
    objective = get_variant(job.variant).objective
    return "expo" if objective in EXPO_OBJECTIVES else "rar" if objective in RAR_OBJECTIVES else "paper"


def table_plan(paper_jobs: list, extension_jobs: list) -> list[tuple[str, object, str]]:
    """``(product, model job, chapter)`` of every table the chapters read, each once, in book order.

    - Explanations: NF/S of every paper model, every ExpO model (the c-sweep and its control
      included); the Attributions chapter adds those of the RAR models.
    - Attributions: attribution robustness of the paper models and of the ExpO and RAR models
      of the experiment's default options (the sweep's models are not in that chapter).
    """
    plan = [("explanations", job, "explanations") for job in paper_jobs]
    plan += [("explanations", job, "explanations") for job in extension_jobs if _family(job) == "expo"]
    plan += [("explanations", job, "attributions") for job in extension_jobs if _family(job) == "rar"]
    plan += [("attributions", job, "attributions") for job in paper_jobs]
    plan += [("attributions", job, "attributions") for job in extension_jobs if not job.options]
    return plan


def extension_attack_plan(extension_jobs: list) -> list[tuple[object, str]]:
    """``(model job, chapter)`` of the extension models the chapters attack (projected, at the
    experiment's epsilon): the ExpO and RAR models of the default options."""
    return [(job, "explanations" if _family(job) == "expo" else "attributions")
            for job in extension_jobs if not job.options]
