"""Did the suggestions work (issue 18): recommendation ids, the served-answer log, experiment arms, attribution
of feedback events to the answers they follow from, and the online metrics, all without any transport.

Modules: :mod:`~recsvc.feedback.served` (what one answer was), :mod:`~recsvc.feedback.ids` (new ids),
:mod:`~recsvc.feedback.log` (the bounded, never-blocking log writer), :mod:`~recsvc.feedback.experiments`
(arms and stable assignment), :mod:`~recsvc.feedback.attribution` (which event counts for which answer) and
:mod:`~recsvc.feedback.metrics` (rates, intervals, arm comparison). The gRPC side is
:mod:`recsvc.server.feedback`; the report is :mod:`recsvc_training.online_report`.
"""
