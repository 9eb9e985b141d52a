from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tracker.ids import uuid7, uuid7_int, uuid7_time, uuid_from_int

MOMENT = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


class Uuid7Tests:
    def test_uuid7_version_and_variant_bits(self):
        for value in (uuid7(), uuid7(at=MOMENT)):
            assert value.version == 7
            assert value.variant == uuid.RFC_4122
            assert str(value)[14] == "7"
            assert str(value)[19] in "89ab"

    def test_uuid7_carries_its_millisecond(self):
        assert uuid7_time(uuid7(at=MOMENT)) == MOMENT.replace(microsecond=123000)
        before = datetime.now(UTC) - timedelta(milliseconds=1)
        assert before <= uuid7_time(uuid7()) <= datetime.now(UTC)

    def test_uuid7_sorts_by_time_down_to_the_microsecond(self):
        moments = [MOMENT + timedelta(microseconds=step) for step in range(0, 3000, 1)]
        moments += [MOMENT + timedelta(days=days) for days in (1, 30, 3650)]
        ids = [uuid7(at=moment) for moment in moments]
        assert sorted(ids) == ids
        # PostgreSQL sorts uuid bytewise, SQLite the hex text: both follow the integer order.
        assert sorted(ids, key=lambda value: value.bytes) == ids
        assert sorted(ids, key=lambda value: value.hex) == ids

    def test_uuid7_now_after_earlier_moments(self):
        earlier = uuid7(at=datetime.now(UTC) - timedelta(milliseconds=5))
        assert earlier < uuid7()

    def test_uuid7_unique_within_one_moment(self):
        ids = {uuid7(at=MOMENT) for _ in range(10_000)} | {uuid7() for _ in range(10_000)}
        assert len(ids) == 20_000

    def test_uuid7_int_keeps_layout_and_only_62_random_bits(self):
        unix_ns = 1_777_000_000_123_456_789
        value = uuid.UUID(int=uuid7_int(unix_ns=unix_ns, random_bits=(1 << 128) - 1))
        assert (value.version, value.variant) == (7, uuid.RFC_4122)
        assert value.int >> 80 == unix_ns // 1_000_000
        zero = uuid.UUID(int=uuid7_int(unix_ns=unix_ns, random_bits=0))
        assert value.int - zero.int == (1 << 62) - 1

    def test_uuid7_refuses_naive_and_pre_1970_moments(self):
        with pytest.raises(TypeError):
            uuid7(at=datetime(2026, 5, 1))
        with pytest.raises(ValueError, match="1970"):
            uuid7(at=datetime(1969, 12, 31, tzinfo=UTC))


class UuidFromIntTests:
    @pytest.mark.parametrize("value", [0, 1, uuid.uuid4().int, (1 << 128) - 1])
    def test_uuid_from_int_same_as_uuid_of_int(self, value):
        made, expected = uuid_from_int(value), uuid.UUID(int=value)
        assert (made, str(made), hash(made), made.is_safe) == (
            expected,
            str(expected),
            hash(expected),
            expected.is_safe,
        )
        assert pickle.loads(pickle.dumps(made)) == expected  # noqa: S301 (its own bytes)

    def test_uuid_from_int_immutable(self):
        with pytest.raises(TypeError):
            uuid_from_int(1).int = 2
