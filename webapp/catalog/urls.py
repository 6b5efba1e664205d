from django.urls import path

from webapp.audit import views as audit
from webapp.catalog.views import browse, bulk, duplicates, images, skus

app_name = "catalog"
urlpatterns = [
    path("", browse.home, name="home"),
    path("index", browse.index_status_panel, name="index_status"),
    path("hierarchy/", browse.hierarchy, name="hierarchy"),
    path("hierarchy/<str:level>/<int:pk>/rename", browse.hierarchy_rename_view,
         name="hierarchy_rename"),
    path("hierarchy/<str:level>/<int:pk>/delete", browse.hierarchy_delete_view,
         name="hierarchy_delete"),
    path("skus/new", skus.create, name="sku_create"),
    path("skus/<int:sku_id>/", skus.detail, name="sku_detail"),
    path("skus/<int:sku_id>/edit", skus.edit, name="sku_edit"),
    path("skus/<int:sku_id>/active", skus.set_active, name="sku_active"),
    path("skus/<int:sku_id>/merge", skus.merge, name="sku_merge"),
    path("skus/<int:sku_id>/history", skus.history, name="sku_history"),
    path("skus/<int:sku_id>/images", images.upload, name="image_upload"),
    path("skus/<int:sku_id>/images/<int:image_id>/move", images.move, name="image_move"),
    path("skus/<int:sku_id>/images/<int:image_id>/remove", images.remove, name="image_remove"),
    path("import/", bulk.start, name="import"),
    path("import/<int:import_id>/", bulk.detail, name="import_detail"),
    path("import/<int:import_id>/apply", bulk.commit, name="import_commit"),
    path("export.zip", bulk.export, name="export"),
    path("duplicates/", duplicates.listing, name="duplicates"),
    path("duplicates/scan", duplicates.scan, name="duplicate_scan"),
    path("duplicates/scans/<int:scan_id>", duplicates.scan_status, name="duplicate_scan_status"),
    path("duplicates/<int:pair_id>/distinct", duplicates.distinct, name="duplicate_distinct"),
    path("duplicates/<int:pair_id>/merge", duplicates.merge, name="duplicate_merge"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/users/<int:user_id>", audit.audit_for_user, name="audit_user"),
]
