# Owners hear about trouble (webhooks.notifications): what an endpoint's owner was last told
# (failing, disabled, or nothing), so that each change of state is notified once.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0006_owner_model'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='notified_at',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='owner notified at'),
        ),
        migrations.AddField(
            model_name='endpoint',
            name='notified_state',
            field=models.CharField(blank=True, choices=[('', 'Nothing'), ('failing', 'Failing'), ('disabled', 'Disabled')], default='', editable=False, help_text='The trouble its owner was last told about by email and signal: failing, disabled, or nothing (healthy, or recovered since).', max_length=16, verbose_name='owner notified'),
        ),
    ]
