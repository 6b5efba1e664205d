"""The SKU full-text search table (FTS5 on SQLite, a GIN-indexed tsvector on PostgreSQL),
filled from the catalogue as it stands. webapp.catalog.search explains the design."""

from django.db import migrations


def install_and_backfill(apps, schema_editor):
    from webapp.catalog.search import search_documents_rebuild

    search_documents_rebuild(using=schema_editor.connection.alias,
                             sku_model=apps.get_model("catalog", "SKU"))


def uninstall(apps, schema_editor):
    from webapp.catalog.search import engine_for

    engine_for(schema_editor.connection).uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0003_curation"),
    ]

    operations = [
        migrations.RunPython(install_and_backfill, uninstall, elidable=False),
    ]
