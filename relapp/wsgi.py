"""WSGI entry point: `gunicorn relapp.wsgi:app`."""

from relapp import create_app

app = create_app()
