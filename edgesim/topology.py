"""Topology: a TOML file parsed and validated once into frozen, typed objects.

Everything downstream (the capacity engine, live mode, plan, reports) takes these
objects, never raw dicts. Times are seconds (floats), sizes bytes (ints), rates per
second, shares fractions in [0, 1]. ``load_topology(path)`` (in ``edgesim._topoload``)
builds them and reports every problem with the file, line and key path.

This module holds only the types, so that it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Distribution:
    """A random quantity: ``kind`` is fixed, lognormal, exponential, pareto or uniform.

    Parameters (seconds or bytes, as the field says): fixed ``value``; lognormal
    ``median``, ``sigma``; exponential ``mean``; pareto ``alpha``, ``minimum``; uniform
    ``minimum``, ``maximum``. ``cap`` clamps every draw (0: no cap).
    """

    kind: str = "fixed"
    value: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    mean: float = 0.0
    alpha: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0
    cap: float = 0.0

    def __post_init__(self) -> None:
        # Floats, even from integers (a topology built in code): the compiled cores
        # read these fields as floats, plain Python would keep an int, and the two
        # would write them differently (a synthetic site's manifest, its deploy id).
        for name in ("value", "median", "sigma", "mean", "alpha", "minimum", "maximum", "cap"):
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Latency:
    """One-way link latency: a base plus uniform jitter in [-jitter, +jitter] (seconds)."""

    base: float = 0.0
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class CostModel:
    """Measured CPU time per request of one kind of edge node, by outcome: the cost
    model ``edgesim calibrate`` writes (docs/calibrate.md), named after the hardware
    profile it was measured on.

    Attributes:
        profile: the profile's name in the cost file.
        file: the cost file.
        hit_memory, hit_disk, miss, revalidate, redirect: seconds of CPU per request
            with that outcome, rule matching left out.
        rules: (site, seconds) per request for matching that site's rules.
        rules_default: per request for a site with rules that was not measured.
    """

    profile: str
    file: Path | None = None
    hit_memory: float = 0.0
    hit_disk: float = 0.0
    miss: float = 0.0
    revalidate: float = 0.0
    redirect: float = 0.0
    rules: tuple[tuple[str, float], ...] = ()
    rules_default: float = 0.0

    def outcome_times(self) -> tuple[float, float, float, float, float]:
        """(hit_memory, hit_disk, miss, revalidate, redirect)."""
        return (self.hit_memory, self.hit_disk, self.miss, self.revalidate, self.redirect)

    def base(self) -> float:
        """The part every request costs before its outcome is known: the cheapest outcome."""
        return min(self.outcome_times())


@dataclass(frozen=True, slots=True)
class EdgeGroup:
    """The edge nodes of one region.

    Attributes:
        nodes: node count.
        workers: concurrent requests per node (beyond: queueing).
        memory_cache, disk_cache: bytes per node (disk 0: no disk tier).
        eviction: ``lru`` (default) or ``fifo``.
        max_object: admission limit in bytes (0: any object that fits).
        egress: bytes/s per node (0: unlimited); transfer time = size / egress.
        service_time: CPU time per request (seconds). With ``costs``, only the part spent
            before the outcome is known (``costs.base()``); the rest depends on the outcome.
        balancer: ``random``, ``least-connections`` or ``consistent-hash`` (by URL).
        cost_per_hour: cost of one node-hour (for plans).
        profile: name of the hardware profile the group was built from ("" if none).
        cost_per_gb_egress: cost of one GB (10**9 bytes) sent from these nodes to clients.
        costs: measured CPU time per request by outcome (``calibration``), or None.
    """

    nodes: int = 1
    workers: int = 16
    memory_cache: int = 256 * 2**20
    disk_cache: int = 0
    eviction: str = "lru"
    max_object: int = 0
    egress: float = 0.0
    service_time: Distribution = field(default_factory=lambda: Distribution("fixed", value=0.0005))
    balancer: str = "random"
    cost_per_hour: float = 0.0
    profile: str = ""
    cost_per_gb_egress: float = 0.0
    costs: CostModel | None = None


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """A kind of edge node (``[profiles.NAME]``): what one node has and costs.

    Edge groups that name the profile start from these values; ``plan`` may weigh
    profiles against each other. Fields mean what they mean in :class:`EdgeGroup`.
    """

    name: str
    workers: int = 16
    memory_cache: int = 256 * 2**20
    disk_cache: int = 0
    eviction: str = "lru"
    max_object: int = 0
    egress: float = 0.0
    service_time: Distribution = field(default_factory=lambda: Distribution("fixed", value=0.0005))
    cost_per_hour: float = 0.0
    costs: CostModel | None = None


@dataclass(frozen=True, slots=True)
class Region:
    """A client region with its edge group.

    Attributes:
        name: region name (unique).
        utc_offset: hours from UTC; the diurnal curve follows local time.
        client_share: share of global clients in this region (shares sum to 1).
        countries, languages: visitor mixes (code -> weight), for rule conditions.
        client_latency: client <-> edge.
        origin_latency: edge <-> origin (or <-> shield).
        edge: the region's edge nodes.
    """

    name: str
    utc_offset: float = 0.0
    client_share: float = 1.0
    countries: tuple[tuple[str, float], ...] = ()
    languages: tuple[tuple[str, float], ...] = ()
    client_latency: Latency = Latency(0.010, 0.002)
    origin_latency: Latency = Latency(0.040, 0.005)
    edge: EdgeGroup = field(default_factory=EdgeGroup)


@dataclass(frozen=True, slots=True)
class Shield:
    """An optional regional tier cache between all edges and the origin."""

    region: str
    nodes: int = 1
    workers: int = 64
    memory_cache: int = 2**30
    disk_cache: int = 0
    service_time: Distribution = field(default_factory=lambda: Distribution("fixed", value=0.0005))
    latency_to_origin: Latency = Latency(0.020, 0.002)
    cost_per_hour: float = 0.0  # per shield node


@dataclass(frozen=True, slots=True)
class Origin:
    """The origin: where it is, how many requests it serves at once, how fast.

    ``workers`` requests are served concurrently; more queue (up to ``max_queue``, 0:
    unbounded; beyond it, 503).
    """

    region: str = ""
    workers: int = 64
    max_queue: int = 0
    service_time: Distribution = field(
        default_factory=lambda: Distribution("lognormal", median=0.02, sigma=0.5)
    )
    cost_per_request: float = 0.0


@dataclass(frozen=True, slots=True)
class Catalog:
    """Synthetic content of a site (see docs/origin.md, synthetic sites).

    ``zipf`` is the popularity exponent (0: uniform). ``types`` is the kind mix; sizes
    follow ``size`` unless ``sizes`` overrides a kind. Cache policy comes from the site's
    ``cache`` classes, as at the origin.
    """

    objects: int = 10_000
    zipf: float = 0.8
    size: Distribution = field(default_factory=lambda: Distribution("lognormal", median=20_000.0, sigma=1.0))
    sizes: tuple[tuple[str, Distribution], ...] = ()
    types: tuple[tuple[str, float], ...] = (("html", 0.2), ("js", 0.1), ("css", 0.1), ("img", 0.6))
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Site:
    """A site: its rules, content and share of requests.

    Attributes:
        name: the host (unique).
        share: share of requests (shares sum to 1).
        directory: a real site directory (files + rules), or None for a synthetic site.
        rules_files: rule files (``_redirects`` and/or ``netlify.toml``), in order.
        catalog: synthetic content (None when ``directory`` is given).
        redirect_share: share of the site's requests that hit redirect sources.
        cache: Cache-Control by class (``html``, ``hashed``, ``default``, ...), then
            by path glob (keys starting with ``/``: the origin's ``[cache.paths]``,
            first match wins), in file order.
    """

    name: str
    share: float = 1.0
    directory: Path | None = None
    rules_files: tuple[Path, ...] = ()
    catalog: Catalog | None = field(default_factory=Catalog)
    redirect_share: float = 0.0
    cache: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class FlashCrowd:
    site: str
    start: float
    duration: float
    multiplier: float
    region: str = ""  # "" = every region


@dataclass(frozen=True, slots=True)
class Deploy:
    """A new deploy of a site: purges it; ``new_fraction`` of objects get new URLs;
    the purge reaches every node within ``propagation`` seconds."""

    site: str
    at: float
    new_fraction: float = 0.1
    propagation: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeCrash:
    region: str
    node: int
    at: float
    down_for: float


@dataclass(frozen=True, slots=True)
class OriginOutage:
    """The origin away for ``duration`` from ``at``. ``mode``: ``stop`` (the process is
    stopped, so connections are refused) or ``stall`` (it is frozen, so connections hang).
    The capacity engine models both as an outage; the crash drill runs them for real."""

    at: float
    duration: float
    mode: str = "stop"


@dataclass(frozen=True, slots=True)
class LatencySpike:
    """Extra latency on a link: ``link`` is ``REGION->origin``, ``REGION->client``,
    or ``REGION->shield`` (with a shield: the edges' uplink, as ``REGION->origin`` is then)."""

    link: str
    at: float
    duration: float
    extra: float


@dataclass(frozen=True, slots=True)
class Traffic:
    """The load: duration, peak, daily curve, events, and an optional trace.

    ``diurnal`` has 24 hourly factors in [0, 1] of local time (1 = peak); requests/s in a
    region at time t = peak_rps x client_share x diurnal(local hour), interpolated.
    """

    duration: float = 3600.0
    peak_rps: float = 1000.0
    warmup: float = 300.0
    start_hour_utc: float = 0.0
    diurnal: tuple[float, ...] = tuple([1.0] * 24)
    flash_crowds: tuple[FlashCrowd, ...] = ()
    deploys: tuple[Deploy, ...] = ()
    trace: Path | None = None
    trace_format: str = ""  # "csv" or "oracle-general"


@dataclass(frozen=True, slots=True)
class Faults:
    crashes: tuple[NodeCrash, ...] = ()
    outages: tuple[OriginOutage, ...] = ()
    spikes: tuple[LatencySpike, ...] = ()
    health_check_delay: float = 5.0  # clients keep trying a dead node this long
    client_timeout: float = 2.0  # a client gives up on a node and retries elsewhere


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """The ``[shadow]`` table: a candidate evaluated beside each edge node's primary
    (docs/shadow.md).

    Attributes:
        candidate: ``reference`` (the reference matcher on the same rules) or ``rules``
            (a second rule set per site).
        rollout: None for shadow mode, else the fraction handed to the candidate.
        timeout: seconds a candidate call may take (0: inline, unbounded). 1 s, not the
            live edge's 50 ms: in virtual time a deadline only has to catch hangs, and a
            loaded machine must not turn slow calls into timeouts (wall-clock events
            that would make two runs of one seed differ).
        samples: mismatches kept per node.
        regions: the regions whose edge nodes shadow (empty: all of them).
        rules: (site, rule files) for ``candidate = "rules"``.
        origin: (site, Cache-Control classes and paths) of the candidate origin for
            ``candidate = "origin"`` (sites not listed: as the primary origin).
    """

    candidate: str
    rollout: float | None = None
    timeout: float = 1.0
    samples: int = 20
    regions: tuple[str, ...] = ()
    rules: tuple[tuple[str, tuple[Path, ...]], ...] = ()
    origin: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    """A whole topology file, validated."""

    name: str
    path: Path | None
    seed: int
    interval: float  # report time-series bucket (seconds)
    regions: tuple[Region, ...]
    region_latency: tuple[tuple[str, str, float], ...]  # (a, b, seconds), symmetric
    origin: Origin
    shield: Shield | None
    sites: tuple[Site, ...]
    traffic: Traffic
    faults: Faults
    source_text: str = ""  # the file as read, embedded in reports
    profiles: tuple[HardwareProfile, ...] = ()
    shadow: ShadowSpec | None = None
    # (key path, resolved path) of every file and folder the topology names (rule files,
    # site folders, the trace, cost files), in the order they were checked: what a run
    # reads besides the text (edgesim sweep hashes their contents into each run_id)
    files: tuple[tuple[str, Path], ...] = ()

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)
