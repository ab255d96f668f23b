"""The migrations are the schema: one head, and the models match what they build."""
import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from webapp.extensions import db


def test_migrations_have_one_head(ctx):
    config = ctx.extensions["migrate"].migrate.get_config()
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_models_match_the_migrations(ctx):
    # The session database was built by `upgrade()` in the app fixture. SQLAlchemy cannot reflect
    # expression indexes on SQLite (it warns and leaves them out): the next test checks those.
    with db.engine.connect() as connection, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", message="autogenerate skipping metadata-specified expression-based index")
        migration_context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(migration_context, db.metadata)
    assert diff == []


def test_the_expression_indexes_of_the_models_exist(ctx):
    wanted = {index.name for table in db.metadata.tables.values() for index in table.indexes
              if any(not hasattr(expr, "name") or expr.name is None for expr in index.expressions)}
    assert "ix_runs_status_waiting" in wanted
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            found = set(connection.exec_driver_sql("SELECT indexname FROM pg_indexes").scalars())
        else:
            found = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
    assert wanted <= found

