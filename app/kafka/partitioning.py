"""Which partition a producer puts a key on: what backfill needs to place card state.

Card state lives on the partition the gateway's producer chose for the card's key, and two
partitioners are in common use: librdkafka's default `consistent_random` (CRC-32 of the key:
confluent-kafka, authpilot's own load generator and harness) and the Java client's default
`murmur2_random` (murmur2 of the key, positive, modulo the partition count; also aiokafka's
default). AUTHPILOT_GATEWAY_PARTITIONER says which one the gateways use; a test checks both
against a real producer on a real broker.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Literal

Partitioner = Literal["consistent_random", "murmur2_random"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as an unsigned 32-bit integer."""
    n = len(data)
    h = (0x9747B28C ^ n) & _MASK
    end = n - n % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = n % 4
    if rest >= 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(partitioner: Partitioner) -> Callable[[bytes, int], int]:
    """key bytes, partition count -> the partition that producer default would choose."""
    if partitioner == "consistent_random":
        return lambda key, n: zlib.crc32(key) % n
    if partitioner == "murmur2_random":
        return lambda key, n: (murmur2(key) & 0x7FFFFFFF) % n
    raise ValueError(f"unknown partitioner {partitioner!r}")
