"""Events: what the site publishes and what each event carries.

- :mod:`webhooks.events.catalog`: the event types, and what each model publishes (settings).
- :mod:`webhooks.events.payloads`: the JSON body of an event, and payload restrictions.
- :mod:`webhooks.events.schemas`: the JSON Schema of each event type's body.
- :mod:`webhooks.events.capture`: the model signal receivers that write model events into the
  outbox (:mod:`webhooks.outbox`).

Nothing is imported here, so that importing one of them does not import the others.
"""
