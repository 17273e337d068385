"""Campaigns: who to message, about what, and when (``recsvc campaign --spec FILE.toml --out DIR``).

In the order a run uses them: :mod:`.spec` (the TOML spec, validated with line numbers), :mod:`.rules`
(audience rules as masks over every customer, due-to-rebuy), :mod:`.suppression` (who must not get it, each
reason counted), :mod:`.content` (contact alias, reminder and add-ons, launch affinity), :mod:`.output`
(Parquet, CSV, summary, chart) and :mod:`.run` (the job, :func:`run_campaign`).
"""

from recsvc_training.campaigns.run import CampaignResult, run_campaign
from recsvc_training.campaigns.spec import CampaignSpec, SpecError, load_spec, parse_spec

__all__ = ["CampaignResult", "CampaignSpec", "SpecError", "load_spec", "parse_spec", "run_campaign"]
