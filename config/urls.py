"""URL configuration: the Django admin, a health URL for load balancers and uptime checks, and ``/``.

``/`` is where ``heroku open`` lands: it leads to the admin, the one page a person reads here.
"""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from core.views import health

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
]
