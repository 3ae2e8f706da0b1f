"""The test infrastructure itself: real Postgres built by the migrations, real Redis."""
import redis
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from db.models import Base
from db.session import normalize_url


def test_migrations_match_orm_schema(database_url):
    engine = create_engine(normalize_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"migrations and db/models.py disagree: {diff}"


def test_redis_is_real(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("probe", "1")
    assert client.get("probe") == b"1"
    assert client.info("server")["redis_version"]
