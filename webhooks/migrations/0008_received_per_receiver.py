# Receiver dedupe is scoped per receiver: a message id is unique per (receiver, webhook_id)
# instead of globally. Rows recorded before keep receiver "" (ReceivedWebhook.ANY_RECEIVER): the
# receiver kit still treats them as seen by every receiver until they expire (7 days by
# default), so no message already handled runs again after the upgrade.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0007_endpoint_notices'),
    ]

    operations = [
        migrations.AddField(
            model_name='receivedwebhook',
            name='receiver',
            field=models.CharField(default='', max_length=255, verbose_name='receiver'),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='receivedwebhook',
            name='webhook_id',
            field=models.CharField(max_length=255, verbose_name='webhook id'),
        ),
        migrations.AddConstraint(
            model_name='receivedwebhook',
            constraint=models.UniqueConstraint(fields=('receiver', 'webhook_id'),
                                               name='webhooks_received_once_per_receiver'),
        ),
    ]
