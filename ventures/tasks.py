"""django-q2 tasks of the control plane."""

from __future__ import annotations

import os
import socket

from django.utils import timezone

from ventures.models import WorkerHeartbeat


def worker_heartbeat() -> str:
    """Scheduled every minute: proves to preflight and /healthz that a cluster is alive."""
    name = f"{socket.gethostname()}:{os.getppid()}"
    WorkerHeartbeat.objects.update_or_create(name=name, defaults={"last_seen": timezone.now()})
    return name
