"""Delivery: everything between a committed event and a receiver's answer.

Driven by tasks (``webhooks.tasks``) or the ``webhooks_deliver`` command, never inside a
user's request. The database is the source of truth: a delivery is claimed by moving its
``next_attempt_at`` to the end of a lease, so a worker that dies loses nothing.

The pipeline, one module per step:

- ``fanout``: :func:`~webhooks.delivery.fanout.fan_out` creates one delivery per (event,
  matching endpoint) for events not yet dispatched.
- ``claims``: :func:`~webhooks.delivery.claims.claim` takes a batch of due deliveries for one
  worker, within each endpoint's flow control (pause, circuit breaker, concurrency cap, rate
  limit), and returns a :class:`~webhooks.delivery.claims.Claim`.
- ``sending``: posts a claim's deliveries over ``webhooks.http``, one share per endpoint on
  the sending threads: headers and signatures, payload restrictions, retry delays.
- ``recording``: writes what sending came to (attempts, delivery states, endpoint health,
  pauses, automatic disabling), then logs and sends the signals.
- ``loop``: :func:`~webhooks.delivery.loop.drain` runs claim, send, record, schedule until
  nothing is due or time is up; :func:`~webhooks.delivery.loop.next_attempt_time`.

Imports go one way: ``loop`` uses ``claims``, ``sending`` and ``recording``; ``recording``
uses ``sending`` (its outcomes) and ``claims`` (the pause reasons); ``sending`` uses
``claims`` (the claim and its lease); ``claims`` and ``fanout`` use no sibling. No submodule
imports this package itself. The names below are what the tasks use.
"""

from __future__ import annotations

from webhooks.delivery.fanout import FAN_OUT_CHUNK, fan_out, fan_out_round
from webhooks.delivery.loop import drain, next_attempt_time

__all__ = ["FAN_OUT_CHUNK", "drain", "fan_out", "fan_out_round", "next_attempt_time"]
