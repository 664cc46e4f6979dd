"""Which model runs at start: one answer for the daemon, ``auricle run --check`` and ``auricle model info``.

The order (docs/ota.md): the installed active model, then the installed previous one, then
``model.path``, then the model shipped inside the package.  Loading installed models
checks them again with the update policy that ``model.*`` is (edge/update/checks.py).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.daemon.config import Config
from edge.model import bundle as bundles
from edge.model.bundle import Bundle, BundleError, load_public_key, read_bundle
from edge.model.classifier import Classifier
from edge.update.active import choose_startup
from edge.update.checks import Loaded
from edge.update.modelstore import ModelStore
from edge.update.updater import load_installed

SHIPPED_MODEL = "esc50.auricle"


def default_model_path() -> str:
    """The shipped model inside the installed package."""
    return str(importlib.resources.files("edge") / "models" / SHIPPED_MODEL)


def load_bundle(config: Config) -> Bundle:
    """The configured bundle (``model.path``), signature-checked when a key is set; else the shipped one.

    ``model.public_key`` guards what comes from outside the package: installs and ``model.path``.  The
    shipped model is part of the installed code, which runs unchecked anyway (whoever can replace it can
    replace the code), so it needs no signature: a device configured for signed updates still starts.
    """
    if not config.model.path:
        return read_bundle(default_model_path())
    key = load_public_key(config.model.public_key) if config.model.public_key else None
    try:
        return read_bundle(config.model.path, public_key=key)
    except BundleError as exc:
        if key is None or not ("signature" in str(exc) or "unsigned" in str(exc)):
            raise
        hint = "model.public_key applies to model.path: sign it (auricle model sign), or unset model.path"
        raise BundleError(f"{exc} ({hint})") from None


def load_configured(config: Config) -> Loaded:
    """The configured (or shipped) bundle, loaded."""
    path = config.model.path or default_model_path()
    b = load_bundle(config)
    sha = bundles.sha256(Path(path).read_bytes())
    classifier = Classifier(b, threads=config.model.threads, kernels=config.model.kernels)
    origin: Literal["configured", "shipped"] = "configured" if config.model.path else "shipped"
    return Loaded(bundle=b, classifier=classifier, sha256=sha, origin=origin)


@dataclass(frozen=True)
class Startup:
    """The model to start with, and why it is not the active installed one (None: it is, or none is installed)."""

    model: Loaded | None
    problem: str | None


def starting_model(config: Config, store: ModelStore) -> Startup:
    """The model the daemon runs at start (read only: the daemon settles the state directory first).

    Raises BundleError/ConfigError for a bad configured bundle when nothing is installed.
    """
    model, problem = choose_startup(
        store, lambda entry: load_installed(store, config.model, entry), lambda: load_configured(config)
    )
    return Startup(model, problem)


def starting_model_of(config: Config) -> Startup:
    """:func:`starting_model` with the store that ``model.state_dir`` names (for the CLI)."""
    return starting_model(config, ModelStore(config.model.state_dir))
