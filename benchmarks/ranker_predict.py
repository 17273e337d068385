"""Time the server's numpy tree evaluation for one request against LightGBM's own predict.

500 candidates x 15 features x 200 trees of 31 leaves is the per-request work of the learned ranker.
Run: ``python -m benchmarks.ranker_predict`` (prints ms per request for both, and their ratio).
"""

from __future__ import annotations

import time

import numpy as np

from recsvc_training.ranker.fit import fit_ranker, tree_ensemble_from_lightgbm


def main() -> None:
    rng = np.random.default_rng(15)
    n_features, groups = 15, [100] * 200
    names = [f"f{i:02d}" for i in range(n_features)]
    X = rng.normal(size=(sum(groups), n_features))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(scale=0.5, size=X.shape[0]) > 1.0).astype(int)
    booster = fit_ranker(X, y, groups, names, params={"num_iterations": 200, "objective": "lambdarank"})
    ensemble = tree_ensemble_from_lightgbm(booster)
    requests = [rng.normal(size=(500, n_features)) for _ in range(20)]
    for X_request in requests[:3]:
        ensemble.predict(X_request)  # warm-up: scratch buffers are allocated on the first call

    def best_ms(predict: object) -> float:
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            for X_request in requests:
                predict(X_request)  # type: ignore[operator]
            timings.append((time.perf_counter() - start) / len(requests))
        return min(timings) * 1e3

    ours = best_ms(ensemble.predict)
    lightgbm_ms = best_ms(lambda x: booster.predict(x, raw_score=True, num_threads=1))
    print(f"{ensemble.n_trees} trees, max depth {ensemble.max_depth}, 500 rows x {n_features} features")
    print(f"numpy TreeEnsemble.predict: {ours:.2f} ms/request; LightGBM predict (1 thread): {lightgbm_ms:.2f} "
          f"ms/request; ratio {lightgbm_ms / ours:.1f}x")


if __name__ == "__main__":
    main()
