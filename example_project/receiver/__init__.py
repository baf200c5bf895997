"""A webhook receiver, as a third party would run it: verifies signatures, dedupes on
``webhook-id`` and shows what arrived."""
