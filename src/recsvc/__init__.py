"""recsvc: a self-hosted omnichannel recommendation service (gRPC server; artifacts from recsvc_training)."""

__version__ = "0.1.0"
