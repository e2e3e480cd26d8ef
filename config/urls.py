"""URL configuration: the Django admin, and a health URL for load balancers and uptime checks."""

from django.contrib import admin
from django.urls import path

from core.views import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
]
