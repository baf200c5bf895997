"""pytest plugin (entry point ``pytest11``): the ``webhooks_outbox`` fixture.

Installed with the package, so a site's test suite gets the fixture with no configuration.
Nothing here touches Django at import time: pytest loads plugins before Django is set up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from webhooks.testing import CapturedWebhooks


@pytest.fixture
def webhooks_outbox() -> Iterator[CapturedWebhooks]:
    """The webhooks the test's code would send, captured instead of sent.

    ``webhooks_outbox.assert_sent("order.created", owner=user, data_contains={...})``; see
    :class:`webhooks.testing.CapturedWebhooks`. Database access is the test's own choice
    (``django_db``, with or without ``transaction=True``): the fixture works with both.
    """
    from webhooks.testing import capture_webhooks

    with capture_webhooks() as captured:
        yield captured
