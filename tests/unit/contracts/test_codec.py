import struct

import pytest

from app.config import Settings
from app.contracts.codec import Codec, DecodeError
from app.harness.sample import SampleTraffic


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(Settings())


@pytest.fixture(scope="module")
def request_record() -> dict:
    return SampleTraffic(1).next_request(1_700_000_000_000)


def test_roundtrip_in_confluent_framing(codec, request_record):
    data = codec.request.encode(request_record)
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert (magic, schema_id) == (0, 1)
    assert codec.request.decode(data) == request_record


def test_encoder_reuses_its_buffer_without_mixing_records(codec, request_record):
    a = codec.request.encode(request_record)
    b = codec.request.encode(dict(request_record, request_id="other", amount_minor=1))
    assert codec.request.decode(a)["request_id"] == request_record["request_id"]
    assert codec.request.decode(b)["amount_minor"] == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"", "undecodable"),
        (lambda d: b"\x00\x00\x00", "undecodable"),
        (lambda d: b"\x01" + d[1:], "undecodable"),
        (lambda d: d[:5] + d[5:-4], "undecodable"),
        (lambda d: d + b"\x00\x01", "undecodable"),
        (lambda d: b"\x00" + struct.pack(">I", 4242) + d[5:], "unknown_schema_id"),
        (lambda d: b"\x00" + struct.pack(">I", 3) + d[5:], "wrong_schema"),
    ],
)
def test_bad_bytes_raise_decode_error_with_reason(codec, request_record, mutate, reason):
    data = mutate(codec.request.encode(request_record))
    with pytest.raises(DecodeError) as err:
        codec.request.decode(data)
    assert err.value.reason == reason


def test_every_schema_field_is_documented():
    import json

    from app.config import REPO_ROOT

    def walk(schema):
        for f in schema.get("fields", []):
            assert f.get("doc"), f"{schema['name']}.{f['name']} has no doc"
            t = f["type"]
            for sub in t if isinstance(t, list) else [t]:
                if isinstance(sub, dict) and sub.get("type") == "array":
                    sub = sub["items"]
                if isinstance(sub, dict) and sub.get("type") == "record":
                    walk(sub)

    for path in (REPO_ROOT / "schemas").glob("*.avsc"):
        walk(json.loads(path.read_text()))
