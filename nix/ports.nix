# The airclass-node port plan in pure Nix (builtins only, no nixpkgs), mirroring the daemon's
# `src/config/ports.rs`. The NixOS module uses it to open the firewall; scripts/nix-check.sh
# compares it with `airclass-node ports --instance NAME --json` for main and node-1 … node-15.
#
#   main       LiveKit 7880, RTC TCP 7881, RTC UDP 50000–50020, control API 8000,
#              LiveKit's own Prometheus metrics (prometheus.port) 6789
#   node-N     7880+10N, 7881+10N, 50000+1000N … +20, 8000+N, 6789+N  (1 ≤ N ≤ 15);
#              from node-12 on LiveKit's two ports skip 8000–8019 (the control API ports):
#              7900+10N, 7901+10N (node-12 8020/8021 … node-15 8050/8051)
#   mDNS       UDP 5353 on every node
# (`livekit_metrics_port` is the name's; `settings.livekit.prometheus_port`, which moves it or
# turns it off (0), is not read here. A name without a plan has no `livekit_metrics_port`.)
#
# Usage:
#   ports = import ./ports.nix;
#   ports.derive "node-1"           -> { livekit_port = 7890; … } or null (name has no plan)
#   ports.forNode "x" { livekit_port = …; … }  -> derived plan with explicit settings winning,
#                                      or null when a port is neither derived nor given
#   ports.missing "x" { … }         -> list of port keys that are neither derived nor given
#   ports.json [ "main" "node-1" ]  -> JSON text: a list of objects shaped like `ports --json`
#
# Command line:
#   nix-instantiate --eval --strict --json -E '(import ./nix/ports.nix).derive "node-3"'
let
  mdnsPort = 5353;
  udpWidth = 20;
  livekitMetricsBase = 6789;
  maxIndex = 15;
  # node-12's 7880+10N would be 8000, main's control API port
  skipApiBlockFrom = 12;

  # The keys of a node's plan that `settings.node` may set explicitly.
  overridable = [
    "livekit_port"
    "rtc_tcp_port"
    "rtc_udp_start"
    "rtc_udp_end"
    "api_port"
  ];

  # "main" -> 0, "node-N" -> N (1 ≤ N ≤ 15, no leading zero), anything else -> null.
  indexOf =
    name:
    if name == "main" then
      0
    else
      let
        m = builtins.match "node-([1-9][0-9]?)" name;
        n = if m == null then null else builtins.fromJSON (builtins.head m);
      in
      if n != null && n <= maxIndex then n else null;

  derive =
    name:
    let
      n = indexOf name;
    in
    if n == null then
      null
    else
      let
        livekit = (if n >= skipApiBlockFrom then 7900 else 7880) + 10 * n;
      in
      {
        livekit_port = livekit;
        rtc_tcp_port = livekit + 1;
        rtc_udp_start = 50000 + 1000 * n;
        rtc_udp_end = 50000 + 1000 * n + udpWidth;
        api_port = 8000 + n;
        livekit_metrics_port = livekitMetricsBase + n;
        mdns_port = mdnsPort;
      };

  # Only the overridable keys that are present in `node` (a `settings.node` attribute set).
  explicit = node: builtins.intersectAttrs (builtins.listToAttrs (map (k: {
    name = k;
    value = null;
  }) overridable)) node;

  missing =
    name: node:
    let
      d = derive name;
      given = explicit node;
    in
    if d != null then [ ] else builtins.filter (k: !(builtins.hasAttr k given)) overridable;

  forNode =
    name: node:
    let
      d = derive name;
      given = explicit node;
    in
    if d != null then
      d // given
    else if missing name node == [ ] then
      given // { mdns_port = mdnsPort; }
    else
      null;

  json = names: builtins.toJSON (map (name: { instance = name; } // derive name) names);
in
{
  inherit
    derive
    forNode
    missing
    json
    indexOf
    overridable
    mdnsPort
    ;
}
