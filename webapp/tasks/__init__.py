"""Celery tasks: thin ``@shared_task`` wrappers over the services.

Task arguments are ids and plain values, never ORM objects, files or bytes.
"""
