"""The paho client behind :class:`edge.publish.mqtt.MqttPublisher`: protocol, login, TLS and command subscriptions.

Commands are subscribed with MQTT 5's "retain as published": the broker then
keeps the retain flag of a message it forwards live, so a retained command is
recognised whether it was stored before the daemon connected (MQTT sets the
flag on those anyway) or published while it is connected.  Over MQTT 3.1.1 a
live message always arrives unflagged.

What goes wrong with the connection, in words: edge/publish/mqtttrouble.py; one bounded connection
for a short job (``auricle run --check``, a daemon that cannot start): edge/publish/mqttoneshot.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.publish.mqttconfig import MqttConfig, TlsConfig

QUEUE_HEADROOM = 1000
"""Messages paho may queue beyond the offline buffer (states, discovery) before refusing more."""
_PROTOCOLS = {"mqttv5": MQTTProtocolVersion.MQTTv5, "mqttv311": MQTTProtocolVersion.MQTTv311}


def make_client(config: MqttConfig, device_id: str, *, id_suffix: str = "") -> mqtt.Client:
    """A paho client set up from ``config`` (callbacks are the caller's to attach).

    ``id_suffix`` makes a client id of its own, so that a probe does not take over the daemon's session."""
    client_id = (config.client_id or f"auricle-{device_id}") + id_suffix
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=_PROTOCOLS[config.protocol])
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
    client.max_queued_messages_set(config.offline_buffer + QUEUE_HEADROOM)
    if config.username is not None:
        client.username_pw_set(config.username, config.resolved_password())
    if config.tls.enabled:
        set_tls(client, config.tls)
    return client


def subscribe_commands(client: mqtt.Client, config: MqttConfig, topics: Sequence[str]) -> None:
    """Subscribe to command topics (QoS 1), keeping the retain flag where the protocol allows."""
    if config.protocol == "mqttv5":
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        client.subscribe([(topic, options) for topic in topics])
    else:
        client.subscribe([(topic, 1) for topic in topics])


def set_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    """Verify the broker against ``tls.ca_file`` (or the system's CAs); a client certificate if given."""
    client.tls_set(
        ca_certs=tls.ca_file,
        certfile=tls.cert_file,
        keyfile=tls.key_file,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if tls.insecure:
        client.tls_insecure_set(True)
