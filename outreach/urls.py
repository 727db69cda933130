"""Public URLs of the outreach app: the unsubscribe link (outreach/unsubscribe.py)."""

from django.urls import path

from outreach.unsubscribe import unsubscribe_view

app_name = "outreach"

urlpatterns = [
    path("u/<str:token>/", unsubscribe_view, name="unsubscribe"),
]
