"""Owners hear about trouble: an endpoint disabled, failing for a while, or recovered.

Three modules, one per step (``docs/notifications.md`` is the user's side):

:mod:`webhooks.notifications.notices`
    The rule: when a notice is due, recorded on the endpoint (``notified_state``) with
    compare-and-set updates so that each change of state is notified once, and the signals
    (``endpoint_disabled``, ``endpoint_failing``, ``endpoint_recovered``) sent once it is
    committed. Called by the delivery recording and by :mod:`webhooks.services`.
:mod:`webhooks.notifications.receivers`
    The signals' receivers (connected by ``AppConfig.ready``): each asks a worker to email
    the notice (the ``webhooks.tasks.notify`` task), so no mail server ever holds up a delivery
    or a request.
:mod:`webhooks.notifications.mail`
    What the task runs: the recipients (``OWNER_EMAILS``, ``SITE_EMAILS``), the templates, and
    Django's email machinery; a failure is logged, never raised.

This package's ``__init__`` imports nothing: the task adapter imports ``mail``, and the
receivers import the dispatcher, which imports the task adapter.
"""
