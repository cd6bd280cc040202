"""The chaos suite (issue 15): faults injected into real workers, every topic read back.

`cases` (malformations as data -> bytes), `traffic` (the steady stream and outcome loop),
`kafka_io` (ledger producer, read-back, committed offsets, group members), `verify` (pure
arithmetic over what the topics held), `state` (worker state vs a straight replay),
`scenarios` (kill, broker, failover, fuzz, redelivery), `report` (the table and JSON).
"""
