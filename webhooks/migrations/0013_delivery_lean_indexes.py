"""Fewer indexes on ``webhooks_delivery``: each one costs an entry per delivery row version.

- The single-column indexes Django made for the ``event`` and ``endpoint`` foreign keys go:
  ``webhooks_delivery_unique`` (event, endpoint) and ``webhooks_delivery_endpoint`` (endpoint,
  created_at) start with those columns and serve the same lookups. Only the indexes are
  dropped (found by introspection, whatever their generated names): the foreign-key
  constraints stay as they are, so nothing is re-validated and no table is rebuilt (SQLite's
  ``AlterField`` would copy the whole table).
- ``webhooks_delivery_status`` leaves out pending deliveries (the delivery loop reads those
  along ``webhooks_delivery_due``).
"""

import django.db.models.deletion
from django.db import migrations, models

KEY_COLUMNS = {"event": "event_id", "endpoint": "endpoint_id"}


def drop_key_indexes(apps, schema_editor):
    Delivery = apps.get_model("webhooks", "Delivery")
    table = Delivery._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    for column in KEY_COLUMNS.values():
        for name, info in constraints.items():
            if (info["columns"] == [column] and info["index"] and not info["unique"]
                    and not info["primary_key"] and not info["foreign_key"]):
                schema_editor.remove_index(Delivery, models.Index(fields=[column], name=name))


def add_key_indexes(apps, schema_editor):
    Delivery = apps.get_model("webhooks", "Delivery")
    for field_name in KEY_COLUMNS:
        field = Delivery._meta.get_field(field_name)
        schema_editor.execute(schema_editor._create_index_sql(Delivery, fields=[field]))


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0012_endpoint_body_format'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='delivery',
            name='webhooks_delivery_status',
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('status', 'pending'), _negated=True), fields=['status', '-created_at'], name='webhooks_delivery_status'),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='delivery',
                    name='endpoint',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='webhooks.endpoint', verbose_name='endpoint'),
                ),
                migrations.AlterField(
                    model_name='delivery',
                    name='event',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='webhooks.event', verbose_name='event'),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_key_indexes, add_key_indexes, elidable=False),
            ],
        ),
    ]
