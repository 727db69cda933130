from django.contrib import admin
from django.urls import include, path

from aicmo_site.views import PasswordSetDoneView, PasswordSetView, healthz

admin.site.site_header = "AICMO Campaign Engine"
admin.site.site_title = "AICMO"
admin.site.index_title = "Operator console"

urlpatterns = [
    # The link an invited member chooses a password with (ventures.services.member_invite_send);
    # before the admin's own URLs, which would answer it with a login page.
    path("admin/set-password/<uidb64>/<token>/", PasswordSetView.as_view(), name="password_set"),
    path("admin/set-password/done/", PasswordSetDoneView.as_view(), name="password_set_done"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Public lead capture page and JSON bulk lead API (leads/urls.py).
    path("", include("leads.urls")),
    # The unsubscribe link of every email, /u/<signed token>/ (outreach/unsubscribe.py).
    path("", include("outreach.urls")),
]

# A refusal inside the console keeps the console's layout (aicmo_site.views.permission_denied).
handler403 = "aicmo_site.views.permission_denied"
