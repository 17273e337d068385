"""Campaign batch speed: 1M customers × 10 suggestions on the 100k-item synthetic set, wall time and peak memory.

Two measurements on the same published set (:mod:`benchmarks.synthetic`, 100k items, 1M customers, the
trainer's ANN index and a learned ranker, so ``Recommend`` takes a trained model's path):

1. **The campaign job over every customer** — :func:`recsvc_training.campaigns.run_campaign` with a rebuy spec
   (due within 14 days by any item, one reminder + 3 add-ons each, suppression, Parquet + CSV + summary +
   chart) over all 1M customers, and a spec that writes one row for every customer without ranking: the
   job's own cost.
2. **The ranking** — :func:`recsvc.ranking.batch.recommend_many` (the batch path campaigns and stored lists
   share) for ``--rank-customers`` customers × 10 suggestions, with a progress bar; extrapolated linearly to
   every customer. With ``--rank-customers 0`` it ranks all of them.

The estimate for "1M × 10" is the every-customer job of (1) plus (2) extrapolated, in wall time and in
CPU time (the machine is shared: wall time is inflated by other jobs, CPU time is not). Peak memory is the
process's maximum resident set (``ru_maxrss``) after each step. The set is cached under ``--work``.

    python -m benchmarks.campaign_batch                          # 5,000 customers ranked, extrapolated
    python -m benchmarks.campaign_batch --rank-customers 0       # every customer (hours on the reference path)
    python -m benchmarks.campaign_batch --workers 2 --skip-jobs  # the ranking only, in 2 forked workers
    python -m benchmarks.campaign_batch --skip-jobs \
        --stored-set benchmarks/results/raw/artifacts-100k/versions/bench-100k-stored
        # customers with nightly lists (the load test's set), answered from them as after a nightly run

``--workers`` ranks in that many forked processes (:mod:`recsvc.ranking.batch`); ``--skip-jobs`` measures the
ranking alone and takes the every-customer job's time from the last report at ``--out`` (the job does not
rank, so the ranking change does not change it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.synthetic import SyntheticSpec, ensure_published

RESULTS = Path(__file__).resolve().parent / "results"

SPEC = """\
[campaign]
name = "bench-rebuy"
kind = "rebuy"
channel = "web"
num_addons = 3
today = "2026-05-07"   # the synthetic data's last day

[contact]
use_customer_id = true

[[audience.rule]]
due = { within_days = 14 }

[suppression]
messaged_within_days = 7
"""


#: Every customer, one row each, no ranking: what the job costs per row written (rules, why, files).
EVERYONE = """\
[campaign]
name = "bench-everyone"
kind = "suggest"
channel = "web"
num_suggestions = 0
today = "2026-05-07"

[contact]
use_customer_id = true

[[audience.rule]]
not = { segment = ["lost"] }
"""


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the forked ranking workers)."""
    usage, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rank-customers", type=int, default=5_000,
                        help="customers to rank for the extrapolation (0 = all)")
    parser.add_argument("--n", type=int, default=10, help="suggestions per customer")
    parser.add_argument("--workers", type=int, default=1, help="ranking processes (0: one per core)")
    parser.add_argument("--skip-jobs", action="store_true", help="rank only; reuse the last report's job times")
    parser.add_argument("--work", default="/tmp/recsvc-campaign-batch")
    parser.add_argument("--out", default=str(RESULTS / "campaign_batch"))
    parser.add_argument("--stored-set", default="",
                        help="a published version folder with nightly lists (e.g. the load test's bench-100k-stored): "
                             "rank the customers it holds lists for, answered from them, instead of the set above")
    args = parser.parse_args()

    from tqdm import tqdm

    from recsvc.artifacts import load_artifact_set, load_current
    from recsvc.artifacts.parts.stored_lists import StoredLists
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.ranking.batch import recommend_many
    from recsvc_training.campaigns import run_campaign

    load_at_start = os.getloadavg()  # the machine is shared: say how busy it was, measured, not assumed
    work = Path(args.work)
    root = work / "artifacts"
    spec = SyntheticSpec(n_items=args.items, n_customers=args.customers)
    t = time.perf_counter()
    ensure_published(root, spec, f"campaign-{args.items}-{args.customers}")
    report: dict[str, Any] = {"items": args.items, "customers": args.customers, "n": args.n,
                              "set_ready_seconds": round(time.perf_counter() - t, 1)}
    out = Path(args.out)
    previous = json.loads(out.with_suffix(".json").read_text()) if args.skip_jobs else {}
    for key, text in (() if args.skip_jobs else (("job_rebuy", SPEC), ("job_every_customer_no_ranking", EVERYONE))):
        spec_path = work / f"{key}.toml"
        spec_path.write_text(text)
        t, cpu = time.perf_counter(), _cpu()
        result = run_campaign(spec_path, root, work / "out", progress=True)
        report[key] = {"seconds": round(time.perf_counter() - t, 1), "cpu_seconds": round(_cpu() - cpu, 1),
                       "sent": result.summary["sent"], "audience": result.summary["audience"],
                       "suppressed": result.summary["suppressed"], "peak_rss_mb": round(_peak_mb())}
        print(json.dumps(report[key]))
    for key in ("job_rebuy", "job_every_customer_no_ranking"):
        if key not in report:
            report[key] = {**previous[key], "from_report_of": previous.get("measured_at", "")}

    model = LoadedModel(load_artifact_set(Path(args.stored_set)) if args.stored_set else load_current(root))
    engine = RecommendationEngine(model)
    count = args.rank_customers or model.n_customers
    if args.stored_set:  # the customers the nightly ranking stored lists for, as the nightly job's campaign sees
        stored = model.parts.get(StoredLists)
        if stored is None:
            parser.error(f"{args.stored_set} holds no stored lists")
        ids = [model.customer_id(int(r)) for r in stored.customers[:count]]
        report["ranking_from"] = f"stored lists of {args.stored_set} ({stored.customers.size} customers)"
    else:
        ids = [model.customer_id(r) for r in range(0, model.n_customers, max(1, model.n_customers // count))][:count]
    bar = tqdm(total=len(ids), desc="recommend_many", unit="customer", mininterval=2.0)
    t, cpu = time.perf_counter(), _cpu()
    done = 0
    for _result in recommend_many(engine, ids, "web", args.n, progress=lambda d: bar.update(d - bar.n),
                                  workers=args.workers):
        done += 1
    seconds, cpu_seconds = time.perf_counter() - t, _cpu() - cpu
    bar.close()
    per_customer = seconds / max(done, 1)
    report["ranking"] = {"customers": done, "seconds": round(seconds, 1),
                         "ms_per_customer": round(1000 * per_customer, 3),
                         "cpu_ms_per_customer": round(1000 * cpu_seconds / max(done, 1), 3),
                         "extrapolated_seconds_all": round(per_customer * model.n_customers, 0),
                         "workers": args.workers, "peak_rss_mb": round(_peak_mb()),
                         "peak_rss_mb_largest_worker": round(
                             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    job = report["job_every_customer_no_ranking"]["seconds"]
    report["estimate_1m_x_n_minutes"] = round((job + per_customer * model.n_customers) / 60, 1)
    report["estimate_1m_x_n_cpu_minutes"] = round(
        (report["job_every_customer_no_ranking"]["cpu_seconds"] + cpu_seconds / max(done, 1) * model.n_customers)
        / 60, 1)
    report["target_minutes"] = 10
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()}
    report["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
