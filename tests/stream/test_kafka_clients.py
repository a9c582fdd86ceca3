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


def test_produce_retrying_serves_delivery_reports_while_the_local_queue_is_full():
    from stream.kafka_clients import produce_retrying

    class Full:
        def __init__(self, refusals: int) -> None:
            self.refusals, self.polls, self.produced = refusals, [], []

        def produce(self, topic, value=None, **kwargs):
            if self.refusals:
                self.refusals -= 1
                raise BufferError("queue full")
            self.produced.append((topic, value, kwargs))

        def poll(self, timeout):
            self.polls.append(timeout)
            return 0

    producer = Full(2)
    produce_retrying(producer, "t", b"v", key=b"k", wait_s=0.05)
    assert producer.polls == [0.05, 0.05]
    assert producer.produced == [("t", b"v", {"key": b"k", "headers": None, "on_delivery": None})]
    produce_retrying(producer, "t", b"w", timestamp=7)
    assert producer.produced[-1][2]["timestamp"] == 7 and producer.polls == [0.05, 0.05]
