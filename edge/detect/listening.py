"""The default listening set: which labels raise events before anyone switches one on or off.

They are the labels whose Home Assistant entities start enabled (edge/publish/discovery.py announces
them): the config's ``mqtt.announce`` when given, else the bundle's ``alert_labels``, else the built-in
:data:`DEFAULT_ANNOUNCE`, plus a bundle's optional AudioSet labels that are enabled by default.  A model
of your own whose labels none of the built-in ones match listens for every label.

Every other label is still scored (its sound sensor, the ``scores`` topic, the clip decision of
``auricle classify``) and starts listening in one step: ``events.enabled`` in the config, a ``set``
command's ``enabled`` or ``listen``, or its Listen switch in Home Assistant.  ``events.listening: all``
restores "every label raises events" for a config that wants it (and for the benchmarks that measure
every label).  One rule for the daemon, ``auricle classify --events`` and replay, so an automation on
"any sound" hears what the dashboard shows, not ``breathing`` inside speech.
"""

from __future__ import annotations

from edge.model.bundle import Manifest

DEFAULT_ANNOUNCE = ("crying_baby", "glass_breaking", "siren", "dog", "door_wood_knock", "clock_alarm")
"""Labels announced when neither the config nor the bundle names any (the ESC-50 ones that alert)."""


def announced(
    labels: tuple[str, ...], alert_labels: tuple[str, ...], configured: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Labels whose entities start enabled: the config's, else the bundle's alert labels, else the defaults.

    Labels the model lacks are left out; when the built-in defaults name none of the model's labels
    (a model of your own), every label is announced.
    """
    if configured is not None:
        return tuple(x for x in labels if x in configured)
    chosen = alert_labels or DEFAULT_ANNOUNCE
    found = tuple(x for x in labels if x in chosen)
    return found if found or alert_labels else labels


def listened(manifest: Manifest, configured: tuple[str, ...] | None) -> tuple[str, ...]:
    """The default listening set of a model: :func:`announced`; its optional AudioSet labels count only when
    enabled by default (or named in ``configured``, the config's ``mqtt.announce``); the labels this device was
    taught (``Manifest.taught``) always: a user who taught a sound wants to hear it."""
    taught = tuple(x for x in manifest.taught if configured is None or x not in configured)
    if configured is not None:
        return announced(manifest.score_labels, manifest.alert_labels, configured) + taught
    on = manifest.audioset.on_by_default if manifest.audioset else ()
    return announced(manifest.event_labels, manifest.alert_labels, None) + on + taught
