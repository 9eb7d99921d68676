"""WSGI entry point: `gunicorn server:app` or `waitress-serve --no-clear-untrusted-proxy-headers server:app`."""

from deflect.web import create_app

app = create_app()
