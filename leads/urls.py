"""Public URLs of the leads app: the capture page and the JSON bulk API (the admin has its own)."""

from django.urls import path

from leads.api import leads_api_view
from leads.views import capture_view

app_name = "leads"

urlpatterns = [
    path("capture/<str:token>/", capture_view, name="capture"),
    path("api/leads/<slug:slug>/", leads_api_view, name="api"),
]
