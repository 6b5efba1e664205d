from django.urls import path

from webapp.review import stats_views, views

app_name = "review"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("bulk", views.bulk, name="bulk"),
    path("skus", views.sku_lookup, name="sku_lookup"),
    path("<int:case_id>/", views.detail, name="detail"),
    path("<int:case_id>/resolve", views.resolve, name="resolve"),
    path("<int:case_id>/reopen", views.reopen, name="reopen"),
    path("<int:case_id>/photos/<int:position>/crop.jpg", views.crop, name="crop"),
    path("gaps/", views.gaps, name="gaps"),
    path("gaps/<int:gap_id>/close", views.gap_close, name="gap_close"),
    path("stats/", stats_views.stats, name="stats"),
    path("stats/<slug:name>.svg", stats_views.plot, name="plot"),
]
