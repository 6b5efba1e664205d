from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "webapp.learning"
    label = "learning"

    def ready(self) -> None:
        # The ml gateway imports no app: it reads the database through these selectors.
        from webapp import ml_gateway
        from webapp.catalog import selectors as catalog
        from webapp.learning import (
            receivers,  # noqa: F401 - connects to the catalogue's signals
            tasks,  # noqa: F401 - registers what services send by name
        )
        from webapp.learning import selectors as learning
        from webapp.learning.artifacts import ArtifactError, index_local_ensure
        from webapp.matching.calibration import fitted_fusion

        def index_local(name: str) -> None:
            try:
                index_local_ensure(name=name)
            except ArtifactError as exc:
                raise ml_gateway.IndexUnavailable(str(exc)) from exc

        ml_gateway.sources_install(ml_gateway.Sources(
            active_index=learning.active_index_files,
            earlier_indexes=learning.earlier_index_files,
            index_local_ensure=index_local,
            sku_of=catalog.active_sku_of,
            sku_descriptions=catalog.sku_descriptions,
            sku_references=catalog.sku_reference_ids,
            reference_images=catalog.reference_images,
            fitted_fusion=fitted_fusion,
        ))
