"""Install and roll back models in a loop through edge.update.updater, as the daemon's updater thread does.

    python ota_driver.py STATE_DIR PUBLIC_KEY PROBATION_S BUNDLE...

The crash-safety test kills this process with SIGKILL at random moments and
checks the state directory after each kill.  "ready" on stdout means the
imports are done and the loop is starting.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from edge.model import bundle
from edge.model.classifier import Classifier
from edge.update.checks import Loaded, Policy
from edge.update.modelstore import ModelStore
from edge.update.request import Request
from edge.update.updater import Updater


class Host:
    """The daemon's side, minus audio: the switch happens at once."""

    def __init__(self, configured: Path) -> None:
        self.configured = configured
        self.model: Loaded | None = None

    def running(self) -> Loaded | None:
        return self.model

    def check_fits(self, classifier: Classifier) -> None:
        del classifier

    def activate(self, model: Loaded, *, probation: bool, timeout_s: float) -> str | None:
        del probation, timeout_s
        self.model = model
        return None

    def load_configured(self) -> Loaded:
        raw = self.configured.read_bytes()
        b = bundle.parse_bundle(raw, str(self.configured))
        return Loaded(bundle=b, classifier=Classifier(b), sha256=bundle.sha256(raw), origin="configured")

    def state_changed(self) -> None:
        pass

    def teach(self, model: Loaded) -> tuple[Loaded, str]:
        return model, ""


def main(state_dir: str, public_key: str, probation_s: str, *paths: str) -> None:
    raws = [Path(p).read_bytes() for p in paths]
    host = Host(Path(paths[0]))
    policy = Policy(public_key=public_key, latency_budget_ms=5000, probation_s=float(probation_s), keep_versions=3)
    updater = Updater(ModelStore(state_dir), policy, host)
    updater.recover()
    pointer = updater.store.pointer()
    host.model = updater.load_entry(pointer.active) if pointer.active else host.load_configured()
    print("ready", flush=True)
    for i in itertools.count():
        if i % 4 == 3:
            updater.handle(Request(action="rollback", id=f"rollback-{i}"))
        else:
            updater.handle(Request(action="install", id=f"install-{i}", payload=raws[i % len(raws)], force=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
