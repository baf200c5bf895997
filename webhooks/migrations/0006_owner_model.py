# The owner model became a setting (WEBHOOKS_OWNER_MODEL, default the user model): only the
# help text changes; the column and its target stay what the first migrate made them.

import django.db.models.deletion
from django.db import migrations, models

from webhooks.owners import owner_model_label  # WEBHOOKS_OWNER_MODEL, else the user model


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0005_flow_control_and_sequences'),
        migrations.swappable_dependency(owner_model_label()),
    ]

    operations = [
        migrations.AlterField(
            model_name='endpoint',
            name='owner',
            field=models.ForeignKey(blank=True, help_text="Whose events this endpoint receives (WEBHOOKS_OWNER_MODEL). Empty: a site-wide endpoint that receives every owner's events.", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='webhook_endpoints', to=owner_model_label(), verbose_name='owner'),
        ),
    ]
