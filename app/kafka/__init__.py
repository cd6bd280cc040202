"""Kafka wiring: connection settings, topics, the dead-letter sink, the local KRaft broker."""
