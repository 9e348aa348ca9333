"""The declarative base and the column types every table shares: the constraint naming convention, enums
stored as strings, primary keys, and ``UTCDateTime`` (every moment handed back UTC-aware, on SQLite too)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, Integer, MetaData, TypeDecorator, func
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A moment in time, always handed back timezone-aware in UTC.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones and hands back naive values, which
    trapline always wrote in UTC. Aware values are converted to UTC before they are written, so a moment
    never shifts between the two databases.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
bigid = Annotated[int, mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)]
created_at = Annotated[datetime, mapped_column(UTCDateTime(), server_default=func.now())]


def enum_column(enum_class: type, length: int = 32) -> Enum:
    """An enum stored as its values' strings (``native_enum=False``), so SQLite and PostgreSQL share migrations."""
    return Enum(enum_class, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON}
