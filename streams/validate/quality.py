"""``kappa quality report``: GX Data Docs for the cdr.raw records of a time range.

Off the hot path by design: a *file* GX project under ``quality_dir`` (its own
stores and a local Data Docs site), the same expectations as the live suite,
run through a Checkpoint with an ``UpdateDataDocsAction``. Undecodable records
cannot be a DataFrame row; they are counted and named in the summary.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from schemas.wire import Decoded, WireDecoder
from streams.validate.connections import suite_config
from streams.validate.reading import offsets_at, partitions_of, read_range, side_consumer
from streams.validate.routing import frame_row
from streams.validate.suite import FRAME_COLUMNS, MAX_EVENT_TIME_PARAM, SuiteConfig, expectations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityReport:
    records: int
    undecodable: int
    success: bool
    expectations: int
    failed_expectations: int
    index: Path


def report(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    settings: ValidatorSettings,
    *,
    start: datetime | None,
    end: datetime | None,
    folder: Path,
) -> QualityReport:
    frame, undecodable = _frame(kafka, registry, topics, start, end)
    config = suite_config(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations
        from great_expectations import checkpoint as gx_checkpoint
        from great_expectations.data_context.types.base import ProgressBarsConfig

        gx: Any = great_expectations
        update_docs: Any = gx_checkpoint.UpdateDataDocsAction  # type: ignore[attr-defined]

        folder.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(folder.resolve()))
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        checkpoint = _checkpoint(gx, context, config, update_docs)
        params = {MAX_EVENT_TIME_PARAM: time.time_ns() // 1_000_000 + config.future_tolerance_ms}
        result = checkpoint.run(
            batch_parameters={"dataframe": frame}, expectation_parameters=params
        )
        run = next(iter(result.run_results.values()))
        stats = run.statistics
        sites = context.get_docs_sites_urls()
    index = Path(str(sites[0]["site_url"]).removeprefix("file://")) if sites else folder
    return QualityReport(
        records=len(frame) + undecodable,
        undecodable=undecodable,
        success=bool(result.success),
        expectations=int(stats.get("evaluated_expectations", 0)),
        failed_expectations=int(stats.get("unsuccessful_expectations", 0)),
        index=index,
    )


def _checkpoint(gx: Any, context: Any, config: SuiteConfig, update_docs: Any) -> Any:
    """The GX checkpoint of the range: the dataframe asset, the suite, its validation
    definition and the Data Docs action (each updated in place if it exists)."""
    source = context.data_sources.add_or_update_pandas("cdr_raw_ranges")
    asset = next((a for a in source.assets if a.name == "cdr_raw"), None)
    if asset is None:
        asset = source.add_dataframe_asset("cdr_raw")
    bd = next((b for b in asset.batch_definitions if b.name == "range"), None)
    if bd is None:
        bd = asset.add_batch_definition_whole_dataframe("range")
    suite = gx.ExpectationSuite(name=config.name, meta={"suite_version": config.version})
    for exp in expectations(config):
        suite.add_expectation(exp)
    suite = context.suites.add_or_update(suite)
    vd = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(data=bd, suite=suite, name=f"{config.name}-range")
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name="cdr_raw_range",
            validation_definitions=[vd],
            actions=[update_docs(name="data_docs")],
            result_format={"result_format": "SUMMARY"},
        )
    )


def _frame(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    start: datetime | None,
    end: datetime | None,
) -> tuple[pd.DataFrame, int]:
    decoder = WireDecoder(clients.registry(registry))
    consumer = side_consumer(kafka, "quality-report")
    rows = []
    undecodable = 0
    try:
        parts = partitions_of(consumer, topics.raw, kafka.bootstrap)
        starts = offsets_at(consumer, topics.raw, parts, start)
        ends = offsets_at(consumer, topics.raw, parts, end) if end is not None else None
        for msg in read_range(consumer, topics.raw, starts, ends):
            got = decoder.decode(msg.value())
            if isinstance(got, Decoded):
                rows.append(frame_row(got)[0])
            else:
                undecodable += 1
    finally:
        consumer.close()
    return pd.DataFrame.from_records(rows, columns=list(FRAME_COLUMNS)), undecodable
