# recsvc images. Two targets from one file:
#   docker build --target server  -t recsvc-server .    # gRPC server: numpy + grpcio + protobuf, and fsspec/s3fs
#   docker build --target trainer -t recsvc-trainer .   # nightly job: adds implicit, pandas, LightGBM ...
# Both carry the s3 extra, so an artifact root may be an s3:// URL (README, Object storage); a local root never
# imports it.
# Both run as an unprivileged user with an exec-form entry point, so SIGTERM reaches the process itself
# (the server drains in-flight requests on SIGTERM).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN python -m venv /opt/server && /opt/server/bin/pip install --no-cache-dir -c constraints.txt ".[s3]" \
 && python -m venv /opt/trainer && /opt/trainer/bin/pip install --no-cache-dir -c constraints.txt ".[train,s3]"

FROM python:3.11-slim AS base
RUN useradd --system --uid 10001 --no-create-home recsvc && mkdir /artifacts && chown recsvc /artifacts
# One BLAS thread per process: several server processes share the cores instead of fighting over them.
ENV OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
    RECSVC_SERVER__HOST=0.0.0.0 RECSVC_SERVER__ARTIFACT_ROOT=/artifacts RECSVC_SERVER__LOG_JSON=true
VOLUME ["/artifacts"]

FROM base AS trainer
COPY --from=build /opt/trainer /opt/trainer
ENV PATH=/opt/trainer/bin:$PATH
USER recsvc
# docker run -v /data:/data:ro -v /shared/artifacts:/artifacts recsvc-trainer --data /data
ENTRYPOINT ["recsvc", "train", "--no-progress"]

FROM base AS server
COPY --from=build /opt/server /opt/server
ENV PATH=/opt/server/bin:$PATH
USER recsvc
EXPOSE 50051
ENTRYPOINT ["recsvc", "serve"]
