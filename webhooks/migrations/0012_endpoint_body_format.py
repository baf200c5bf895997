# Endpoints choose the body format of their deliveries: Standard Webhooks JSON (every existing
# endpoint) or a CloudEvents 1.0 structured-mode event.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0011_endpoint_disabled_by'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='body_format',
            field=models.CharField(choices=[('standard', 'Standard Webhooks JSON'), ('cloudevents', 'CloudEvents 1.0 (structured JSON)')], default='standard', help_text='standard: the event as Standard Webhooks JSON (Content-Type application/json). cloudevents: the same event as a CloudEvents 1.0 structured-mode event (application/cloudevents+json). Both are signed alike.', max_length=16, verbose_name='body format'),
        ),
    ]
