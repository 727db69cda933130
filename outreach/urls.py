"""Public URLs of the outreach app: the unsubscribe link (outreach/unsubscribe.py) and the ESP
webhooks (outreach/webhooks.py)."""

from django.urls import path

from outreach.unsubscribe import unsubscribe_view
from outreach.webhooks import esp_webhook

app_name = "outreach"

urlpatterns = [
    path("u/<str:token>/", unsubscribe_view, name="unsubscribe"),
    path("anymail/<slug:esp>/<slug:kind>/", esp_webhook, name="esp_webhook"),
]
