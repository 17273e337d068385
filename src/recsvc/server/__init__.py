"""The thin gRPC layer over :mod:`recsvc.ranking`: servicer, error interceptor, server assembly.

Importing this package imports grpc; the ranking core does not.
"""
