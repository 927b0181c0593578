"""ASGI entry point of the example host project. django-presence's handler keeps long polls
(GET events) from holding a thread each while they wait (docs/events.md):

    uvicorn example_project.asgi:application --app-dir example_project
"""

from __future__ import annotations

import os

from django_presence.events.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

application = get_asgi_application()
