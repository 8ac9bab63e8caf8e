# Stand-in for prom/prometheus where no registry answers (air-gapped hosts, this project's CI):
# Debian bookworm's `prometheus` package laid out like the upstream image, so compose.gpu.yml
# runs with PROMETHEUS_IMAGE=gpu-launcher/standin-prometheus:vX.Y.Z: /bin/prometheus, /bin/promtool and a busybox wget (the healthcheck's), config in
# /etc/prometheus/prometheus.yml, storage in the /prometheus volume, user nobody (65534).
# Debian ships 2.42; deploy/prometheus/prometheus.yml keeps to what 2.42 and v3 both read.
# Its own name, never prom/prometheus (scripts/standin-third-party builds it):
#   docker build -f deploy/standins/prometheus.Dockerfile \
#       -t gpu-launcher/standin-prometheus:vX.Y.Z deploy/standins
ARG STANDIN_BASE=gpu-launcher/standin-bookworm:latest
FROM ${STANDIN_BASE}
ARG PROMETHEUS_DEB_VERSION=2.42.0+ds-5+deb12u1
ARG BUSYBOX_DEB_VERSION=1:1.35.0-4+deb12u1+b1
SHELL ["/bin/sh", "-eu", "-c"]
# The package's maintainer scripts would start a daemon; policy-rc.d forbids that in a build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "prometheus=${PROMETHEUS_DEB_VERSION}" "busybox=${BUSYBOX_DEB_VERSION}" >/dev/null \
 && ln -s /bin/busybox /usr/local/bin/wget \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/sbin/policy-rc.d \
 && mkdir -p /prometheus \
 && chown 65534:65534 /prometheus
# Upstream's default config (it scrapes itself), for a bare `docker run`.
COPY prometheus.yml /etc/prometheus/prometheus.yml
LABEL org.gpu-launcher.standin=true \
      org.opencontainers.image.description="prom/prometheus stand-in: Debian prometheus"
USER 65534:65534
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
