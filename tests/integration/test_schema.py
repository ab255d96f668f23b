"""The migrations are the schema: one head, and the models match what they build."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from webapp.extensions import db


def test_migrations_have_one_head(ctx):
    config = ctx.extensions["migrate"].migrate.get_config()
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_models_match_the_migrations(ctx):
    # The session database was built by `upgrade()` in the app fixture.
    with db.engine.connect() as connection:
        migration_context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(migration_context, db.metadata)
    assert diff == []

