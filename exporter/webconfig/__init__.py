"""``--web.config.file``: Prometheus exporter-toolkit web config, one concern a module.

``schema`` parses and validates the file as the Go toolkit does; ``tls`` builds the server
context and checks client SANs; ``auth`` checks basic-auth passwords; ``ratelimit`` is the
token bucket of ``rate_limit``; ``watcher`` re-reads the file and its certificates; ``http``
puts rate limit, auth and headers in front of the app.
"""

from exporter.webconfig.http import UNAUTHENTICATED_PATHS, install
from exporter.webconfig.schema import WebConfig, parse_web_config
from exporter.webconfig.watcher import WebConfigWatcher, load_web_config

__all__ = ["UNAUTHENTICATED_PATHS", "WebConfig", "WebConfigWatcher", "install",
           "load_web_config", "parse_web_config"]
