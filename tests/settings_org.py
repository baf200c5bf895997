"""The suite's second configuration: organizations own endpoints and events.

``DJANGO_SETTINGS_MODULE=tests.settings_org ./scripts/test.sh -m owners`` runs the tests marked
``owners`` with ``WEBHOOKS_OWNER_MODEL = "testapp.Organization"`` (tests without the marker are
left out: they assume users own things). Its test database is its own, so both configurations
can be migrated side by side.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403 - this module is tests.settings with a few changes
from tests.settings import BASE_DIR, DATABASES, WEBHOOKS

WEBHOOKS_OWNER_MODEL = "testapp.Organization"

_db = DATABASES["default"]
if _db["ENGINE"].endswith("sqlite3"):
    _suffix = os.environ.get("TEST_DB_SUFFIX", "")
    _db["TEST"]["NAME"] = str(BASE_DIR.parent / "var" / f"test-db-org{_suffix}.sqlite3")
else:
    _db["TEST"] = {"NAME": f"{_db.get('TEST', {}).get('NAME') or 'test_' + _db['NAME']}_org"}

WEBHOOKS = {
    **WEBHOOKS,
    "MODELS": {
        **WEBHOOKS["MODELS"],
        "testapp.Order": {"events": ["created", "updated", "deleted"], "owner": "organization"},
        "testapp.LineItem": {"events": ["created"], "owner": "order.organization"},
    },
    "API_OWNER": "tests.testapp.owners.organization_of",
}
