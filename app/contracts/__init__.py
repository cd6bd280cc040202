"""The contracts: Avro codec in Confluent framing, domain validation, typed records, the
vocabulary, and the ingest contract (the event-log format a history comes in, and its check)."""
