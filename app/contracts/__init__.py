"""The wire contracts: Avro codec in Confluent framing, domain validation, typed records."""
