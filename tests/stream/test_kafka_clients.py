"""Client configuration: users' librdkafka properties win over tunable defaults, never over
what the delivery guarantee rests on."""
from __future__ import annotations

from stream.config import KafkaSettings
from stream.kafka_clients import consumer_config, producer_config


def test_client_properties_override_tunables_but_not_the_guarantee() -> None:
    settings = KafkaSettings(bootstrap_servers="b:9092", client={
        "message.max.bytes": 67108864, "fetch.max.bytes": 134217728, "enable.idempotence": False,
        "enable.auto.commit": True, "security.protocol": "SASL_SSL"})
    producer = producer_config(settings)
    assert producer["message.max.bytes"] == 67108864 and producer["security.protocol"] == "SASL_SSL"
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert "enable.auto.commit" not in producer
    consumer = consumer_config(settings)
    assert consumer["fetch.max.bytes"] == 134217728
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False
    defaults = producer_config(KafkaSettings(bootstrap_servers="b:9092"))
    assert defaults["message.max.bytes"] == 10485760 and defaults["compression.type"] == "lz4"
