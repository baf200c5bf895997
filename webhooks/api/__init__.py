"""The self-service REST API (Django REST framework): mount ``webhooks.api.urls``.

This subpackage is the only part of django-webhooks that imports DRF views and routers; the
core never imports it.
"""
