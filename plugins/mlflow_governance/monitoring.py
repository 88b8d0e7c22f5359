"""Airflow pieces of champion monitoring that the stock operators lack."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator


class TriggerRetrainOperator(TriggerDagRunOperator):
    """TriggerDagRunOperator whose run note is templated too.

    The reason for a retrain is known only at run time (the monitor's verdict), so the note
    written on the triggered DAG run must render from XCom like ``conf`` does.
    """

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "note")
