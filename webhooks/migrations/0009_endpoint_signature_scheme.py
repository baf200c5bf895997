# Endpoints choose their signature scheme: v1 (HMAC, whsec_ secret: every existing endpoint)
# or v1a (ed25519, whsk_ signing key kept in the same encrypted signing_secret column).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0008_received_per_receiver'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='signature_scheme',
            field=models.CharField(choices=[('v1', 'v1: HMAC-SHA256, shared secret'), ('v1a', 'v1a: ed25519, public key')], default='v1', help_text='v1: HMAC-SHA256 with a shared whsec_ secret. v1a: ed25519; receivers verify with a whpk_ public key, which cannot sign. Changing it rotates the key (the old one keeps signing for the grace period).', max_length=8, verbose_name='signature scheme'),
        ),
    ]
