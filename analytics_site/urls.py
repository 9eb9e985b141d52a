from django.contrib import admin
from django.urls import include, path

from analytics_site import views
from tracker import views as tracker_views

urlpatterns = [
    path("", views.counter, name="counter"),
    path("about/", views.about, name="about"),
    path("healthz", views.healthz, name="healthz"),
    path("t/event", tracker_views.event_collect, name="event-collect"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("share/", include("dashboard.share_urls")),
    path("admin/", admin.site.urls),
]
