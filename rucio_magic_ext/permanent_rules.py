"""The rules the replication policy puts on run datasets, as the project asks Rucio for them: made by the
scanner at registration, and made again by the audit's fix when one is found gone."""

from __future__ import annotations

from rucio_magic_ext.replication import RuleSpec
from rucio_magic_ext.rucio_db import RuleRequest


def permanent_rule(spec: RuleSpec, scope: str, dataset: str) -> RuleRequest:
    """A chained entry's rule copies only from its source, waiting (STUCK) until the first copy is there."""
    return RuleRequest(
        scope,
        dataset,
        spec.rse_expression,
        spec.copies,
        spec.rule_comment,
        spec.activity,
        spec.lifetime,
        spec.grouping,
        source_replica_expression=spec.source,  # from the first destination, not La Palma again
    )
