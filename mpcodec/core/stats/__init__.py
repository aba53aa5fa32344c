"""The statistics layer every study uses: intervals over seeds, hypotheses, replication, one vocabulary.

The seed is the unit of replication. Intervals: Student t on per-seed values (`t_interval`), BCa where
the statistic is not a mean (`bca_interval`). Hypotheses: two-sided one-sample t test, Holm within a
declared family (`test_hypothesis`, `test_family`, `hypothesis_family`). Claims of earlier work: TOST
equivalence within a declared margin (`test_equivalence`, `Margin`), claimed signs (`test_direction_claim`),
Holm within a table (`replication_family`). No verdict below MIN_SEEDS seeds or for a smoke run. Each
rule's false-positive rate is checked by simulation in tests/core/test_stats.py; docs/replication.md
states the rules and every claim's test.
"""

from mpcodec.core.stats.equivalence import (Margin, ReplicationResult, direction_p_values,
                                                equivalence_from_estimate, equivalence_p_values,
                                                replication_family, replication_verdicts, test_direction_claim,
                                                test_equivalence, tost)
from mpcodec.core.stats.hypotheses import (HypothesisResult, base_rate_excess, holm, hypothesis_family,
                                               hypothesis_verdicts, one_sample_t, test_family, test_hypothesis,
                                               verdict)
from mpcodec.core.stats.intervals import (Interval, bca_interval, bootstrap_ci, cohens_dz, pooled_sd,
                                              seed_moments, standardized_mean_difference, t_interval)
from mpcodec.core.stats.reporting import smoke_banner, to_json
from mpcodec.core.stats.rules import (ALPHA, HYPOTHESIS_VERDICTS, MIN_SEEDS, REPLICATION_VERDICTS,
                                          HypothesisVerdict, ReplicationVerdict)

Verdict = HypothesisVerdict  # The older name of the hypothesis vocabulary's type.

__all__ = [
    "ALPHA", "HYPOTHESIS_VERDICTS", "MIN_SEEDS", "REPLICATION_VERDICTS", "HypothesisResult", "HypothesisVerdict",
    "Interval", "Margin", "ReplicationResult", "ReplicationVerdict", "Verdict", "base_rate_excess",
    "bca_interval", "bootstrap_ci", "cohens_dz", "direction_p_values", "equivalence_from_estimate",
    "equivalence_p_values", "holm", "hypothesis_family", "hypothesis_verdicts", "one_sample_t", "pooled_sd",
    "replication_family", "replication_verdicts", "seed_moments", "smoke_banner", "standardized_mean_difference",
    "t_interval", "test_direction_claim", "test_equivalence", "test_family", "test_hypothesis", "to_json",
    "tost", "verdict",
]
