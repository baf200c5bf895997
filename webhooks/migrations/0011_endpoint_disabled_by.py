# Who switched an endpoint off (owner, staff, or automatically): the owner cannot switch on
# what staff switched off. Endpoints already off are classified by their (English) reason;
# any other reason is staff's, whom the owner must ask.

from django.db import migrations, models

#: The reasons the app wrote before this migration, in English.
OWNER_REASON = "Disabled by its owner."
GONE_REASON = "The endpoint answered 410 Gone."
FAILURE_REASON_START = "Every delivery failed for "


def classify_disabled(apps, schema_editor):
    """``disabled_by`` of the endpoints that are off: system for a 410 or sustained failure,
    owner for the owner's own reason or none (created off), staff for anything else."""
    Endpoint = apps.get_model("webhooks", "Endpoint")
    off = Endpoint.objects.using(schema_editor.connection.alias).filter(is_active=False)
    system = models.Q(disabled_reason=GONE_REASON) | models.Q(
        disabled_reason__startswith=FAILURE_REASON_START)
    owner = models.Q(disabled_reason=OWNER_REASON) | models.Q(disabled_reason="")
    off.filter(system).update(disabled_by="system")
    off.filter(owner).update(disabled_by="owner")
    off.exclude(system | owner).update(disabled_by="staff")


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0010_endpoint_rest_hook'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='disabled_by',
            field=models.CharField(blank=True, choices=[('', 'Nobody (active)'), ('owner', 'Its owner'), ('staff', 'Staff'), ('system', 'Automatically (410 Gone, sustained failure)')], default='', editable=False, help_text='Who switched it off. When staff did, its owner cannot switch it on again: only staff can.', max_length=16, verbose_name='disabled by'),
        ),
        migrations.RunPython(classify_disabled, migrations.RunPython.noop, elidable=True),
    ]
