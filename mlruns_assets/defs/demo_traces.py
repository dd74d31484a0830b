"""The private demo traces asset of an imputation experiment (the export itself:
``pipeline.demo_traces``)."""

from pathlib import Path

import dagster as dg

from mlruns_assets.defs.resources import (
    ExtractionPolicyResource,
    MlflowTrackingResource,
    PrivateOutputsResource,
)
from mlruns_assets.pipeline.demo_traces import TRACES_FOLDER, export_demo_traces, public_label
from mlruns_assets.source.tracking import ExperimentRef, exclusion_reason


def build_demo_traces_asset(experiment: ExperimentRef) -> dg.AssetsDefinition:
    """The (unpartitioned) demo traces asset of one imputation experiment."""
    slug = experiment.slug

    @dg.asset(
        key=[slug, TRACES_FOLDER],
        group_name=slug,
        kinds={"parquet"},
        description=(
            f"Raw and imputed traces of the configured demo subjects in every run of MLflow "
            f"experiment '{experiment.name}', as Parquet files in the private folder (one per "
            "run). They carry original subject codes and never enter the results database. "
            "Subjects found in no run are listed as missing."
        ),
    )
    def demo_traces(
        context: dg.AssetExecutionContext,
        mlflow_tracking: MlflowTrackingResource,
        extraction_policy: ExtractionPolicyResource,
        private_outputs: PrivateOutputsResource,
    ) -> dg.MaterializeResult[None]:
        store = mlflow_tracking.store()
        subject_map = extraction_policy.load_subject_map()
        runs = (
            run
            for run in store.iter_runs(experiment.experiment_id)
            if exclusion_reason(run, experiment.name, mlflow_tracking.admitted_statuses) is None
        )
        folder = Path(private_outputs.folder) / TRACES_FOLDER / slug
        export = export_demo_traces(
            store,
            runs,
            private_outputs.demo_subjects,
            subject_map,
            folder,
            extraction_policy.memory_guard(),
        )
        missing = [public_label(code, subject_map) for code in export.missing]
        if missing:
            context.log.warning(
                f"{len(missing)} demo subject(s) found in no run: {', '.join(missing)}"
            )
        for note in export.notes:
            context.log.warning(note)
        return dg.MaterializeResult(
            metadata={
                "files": dg.MetadataValue.int(len(export.files)),
                "rows": dg.MetadataValue.int(export.rows),
                "folder": dg.MetadataValue.path(str(folder)),
                "missing_subjects": dg.MetadataValue.json(missing),
                "runs_per_subject": dg.MetadataValue.json(
                    {public_label(c, subject_map): n for c, n in export.runs_by_subject.items()}
                ),
                "notes": dg.MetadataValue.text("; ".join(export.notes) or "none"),
            }
        )

    return demo_traces
