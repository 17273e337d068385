"""Benchmarks beside the code: synthetic catalogs, a loopback load generator and a bare echo server.

``python -m benchmarks.load --scenario all`` reproduces ``benchmarks/results/latest.md``; see
``benchmarks/README.md``.
"""
