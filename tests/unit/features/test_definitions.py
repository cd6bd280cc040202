"""The feature owners agree with the entities and with the worker's owner routing."""

from __future__ import annotations

from app.features.definitions import ENTITIES, OWNERS
from app.state.deltas import OWNER_TAGS


def test_every_entity_is_owned_by_a_known_owner_keyed_by_its_first_field() -> None:
    key_field = {"card": "card_fingerprint"} | {o: f for o, (_, f) in OWNER_TAGS.items()}
    assert set(key_field) == set(OWNERS)
    for e in ENTITIES:
        assert e.fields[0] == key_field[e.owner], e.name


def test_the_worker_repartitions_to_every_owner_but_the_co_partitioned_card() -> None:
    assert tuple(OWNER_TAGS) == tuple(o for o in OWNERS if o != "card")
    assert len({tag for tag, _ in OWNER_TAGS.values()}) == len(OWNER_TAGS)
