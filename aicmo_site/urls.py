from django.contrib import admin
from django.urls import include, path

from aicmo_site.views import healthz

admin.site.site_header = "AICMO Campaign Engine"
admin.site.site_title = "AICMO"
admin.site.index_title = "Operator console"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Public lead capture page and JSON bulk lead API (leads/urls.py).
    path("", include("leads.urls")),
    # The unsubscribe link of every email, /u/<signed token>/ (outreach/unsubscribe.py).
    path("", include("outreach.urls")),
]
