"""Celery entry point: ``celery -A celery_app worker|beat|flower``.

The Celery app is built by the Flask factory (Flask's own Celery pattern), so
tasks run inside the Flask app context with the same configuration.
"""
from webapp import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
