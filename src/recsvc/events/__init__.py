"""Live events: what customers do between two nightly models, recorded, shared and laid over the model.

:mod:`.validation` checks one event against the input contract (the trainer's reason codes); :mod:`.store` is
the one interface of the two backends (:mod:`.sqlite_store`, embedded; :mod:`.redis_store`, several replicas);
:mod:`.recording` records events and links; :mod:`.overlay` follows the store in every server process and
answers what a customer did after the model's cut-off. Transport-free: the gRPC edge is
:mod:`recsvc.server.events`.
"""
