"""Prometheus metrics (module level: registered once per process)."""

from prometheus_client import Counter, Gauge, Histogram

BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1200, float("inf"))

BUILD_TIME = Histogram("panbinder_build_seconds", "Time of image builds", ["status"], buckets=BUCKETS)
LAUNCH_TIME = Histogram(
    "panbinder_launch_seconds", "Time from launch request to running server", ["status"], buckets=BUCKETS
)
BUILDS_IN_PROGRESS = Gauge("panbinder_builds_in_progress", "Builds running now")
BUILD_QUEUE = Gauge("panbinder_build_queue_length", "Builds waiting for a build slot")
BUILDS = Counter(
    "panbinder_builds_total",
    "Finished builds by outcome (built, failed, timeout, abandoned; shared: waited for another portal's)",
    ["outcome"],
)
LAUNCHES_IN_PROGRESS = Gauge("panbinder_launches_in_progress", "Launches running now")
REQUESTS = Counter("panbinder_build_requests_total", "Requests to /build by outcome", ["provider", "outcome"])
CACHE_HITS = Counter("panbinder_image_cache_total", "Registry lookups by result", ["result"])
POOL_SERVERS = Gauge("panbinder_prestarted_servers", "Pre-started servers waiting in the pool")
POOL_HITS = Counter("panbinder_pool_hits_total", "Launches that took a pre-started server")
POOL_MISSES = Counter(
    "panbinder_pool_misses_total", "Launches that found no pre-started server of their kind"
)
POOL_EVICTIONS = Counter(
    "panbinder_pool_evictions_total", "Pre-started servers removed to make room for more expected launches"
)
POOL_MEMORY = Gauge("panbinder_pool_memory_bytes", "Memory used by the pre-started servers")
CHECK_VERDICTS = Gauge(
    "panbinder_check_verdicts", "Publications by the verdict of their last reproducibility check", ["verdict"]
)
