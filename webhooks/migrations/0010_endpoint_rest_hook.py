# Zapier REST Hooks: endpoints subscribed through the REST Hooks routes are marked, so that a
# 410 Gone from their URL removes them (the protocol's rule) instead of disabling them.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0009_endpoint_signature_scheme'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='rest_hook',
            field=models.BooleanField(default=False, editable=False, help_text='Subscribed through the REST Hooks (Zapier) routes: deleted when its URL answers 410 Gone, instead of disabled.', verbose_name='REST Hook'),
        ),
    ]
