"""PostgreSQL: ``webhooks_insert_event``, the function the outbox calls to draw an object's next
sequence number and insert its event in one call.

The same work as the data-modifying ``WITH … INSERT`` the outbox sent before (and still sends
where the function is missing), but PL/pgSQL keeps the plans of its two statements for the
life of the database session, so the server plans them once per connection instead of once
per event: about 70 µs less per event on the benchmark machine, without prepared statements
(which a transaction-pooling PgBouncer cannot keep). The owner parameter takes the type of the
``owner_id`` column (``%TYPE``), whatever the owner model's primary key. Other databases: no-op.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION webhooks_insert_event(
    p_key webhooks_objectsequence.key%TYPE,
    p_id webhooks_event.id%TYPE,
    p_type webhooks_event.type%TYPE,
    p_owner webhooks_event.owner_id%TYPE,
    p_created webhooks_event.created_at%TYPE,
    p_head text,
    p_tail text,
    p_error webhooks_event.error%TYPE,
    p_dispatched webhooks_event.dispatched_at%TYPE
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    -- The counter's row lock is held until commit: a concurrent transaction that changes the
    -- same object waits here, then draws the next number.
    INSERT INTO webhooks_objectsequence (key, value) VALUES (p_key, 1)
        ON CONFLICT (key) DO UPDATE SET value = webhooks_objectsequence.value + 1
        RETURNING value INTO n;
    INSERT INTO webhooks_event (id, type, owner_id, created_at, payload, error, dispatched_at,
                                sequence)
        VALUES (p_id, p_type, p_owner, p_created, p_head || n::text || p_tail, p_error,
                p_dispatched, n);
    RETURN n;
END
$$
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS webhooks_insert_event", None)


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0013_delivery_lean_indexes")]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
