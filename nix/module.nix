# NixOS module `services.airclass-node`: one or more airclass-node instances on a machine.
#
# It reuses the package's `airclass-node@.service` template (systemd.packages) and adds one
# drop-in per instance, so NixOS runs the same unit logic (sandbox, credentials, restart policy)
# as the Debian package. The firewall is NixOS's: the daemon is told (AIRCLASS_FIREWALL=external)
# to leave nftables alone, and `openFirewall` opens the port plan computed by ./ports.nix.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    literalExpression
    types
    ;

  cfg = config.services.airclass-node;
  ports = import ./ports.nix;
  settingsFormat = pkgs.formats.toml { };

  enabledInstances = lib.filterAttrs (_: inst: inst.enable) cfg.instances;
  instanceNames = lib.attrNames enabledInstances;

  # settings.<section> of the cluster-wide file, overlaid by the instance's own file: the same
  # layering the daemon applies (per-section, one level deep is all these keys need).
  section =
    inst: name: (cfg.settings.${name} or { }) // (inst.settings.${name} or { });

  nodeNameOf = instName: inst: (section inst "node").name or instName;

  credentialLines =
    [
      # The Nix package strips the template's Debian LoadCredential= lines; the empty
      # assignment resets the list as well, for a template from elsewhere.
      ""
      "livekit-api-key:${cfg.secrets.livekitApiKeyFile}"
      "livekit-api-secret:${cfg.secrets.livekitApiSecretFile}"
      "cluster-secret:${cfg.secrets.clusterSecretFile}"
      "app-token-sha256:${cfg.secrets.appTokenSha256File}"
    ]
    ++ lib.optional (
      cfg.secrets.redisPasswordFile != null
    ) "redis-password:${cfg.secrets.redisPasswordFile}";

  secretPaths = lib.filterAttrs (_: v: v != null) {
    inherit (cfg.secrets)
      livekitApiKeyFile
      livekitApiSecretFile
      clusterSecretFile
      appTokenSha256File
      redisPasswordFile
      ;
  };

  defaultSecretNames = {
    livekitApiKeyFile = "livekit-api-key";
    livekitApiSecretFile = "livekit-api-secret";
    clusterSecretFile = "cluster-secret";
    appTokenSha256File = "app-token.sha256";
  };

  nodeFile = name: "airclass/nodes/${name}.toml";

  instanceModule =
    { name, config, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run this instance (`airclass-node@${name}.service`) at boot.";
        };

        mode = mkOption {
          type = types.enum [
            "standalone"
            "main"
            "sub"
          ];
          default = "standalone";
          description = ''
            Role of this node. `standalone` runs LiveKit alone; `main` also runs the cluster
            membership and placement and answers join requests; `sub` registers with the main
            node (found over mDNS, or at {option}`mainUrl`) and sends it heartbeats.
            Passed to the daemon as `MODE`.
          '';
        };

        mainUrl = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "http://10.0.0.1:8000";
          description = ''
            URL of the main node's control API (`MAIN_NODE_URL`). When null, a `sub` instance
            finds main over mDNS (`cluster.mdns`, on by default). Set it where multicast does not
            cross the network between the nodes.
          '';
        };

        redisUrl = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "redis://10.0.0.1:6379";
          description = ''
            Redis shared by every node of the cluster and by LiveKit (`REDIS_URL`). When null, the
            daemon's default or `settings.redis.url` applies. Never put a password in the URL: use
            {option}`services.airclass-node.secrets.redisPasswordFile`.
          '';
        };

        settings = mkOption {
          type = settingsFormat.type;
          default = { };
          example = literalExpression ''
            {
              node.advertise_address = "10.0.0.5";
              livekit.expected_participants = 200;
            }
          '';
          description = ''
            Per-instance configuration, written to `/etc/airclass/nodes/${name}.toml` and layered
            over {option}`services.airclass-node.settings` by the daemon (same schema; unknown keys
            are refused by `airclass-node check` when the unit starts). Explicit ports in
            `settings.node` (`livekit_port`, `rtc_tcp_port`, `rtc_udp_start`, `rtc_udp_end`,
            `api_port`) win over the derived port plan, here and in the firewall.
          '';
        };

        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          example = {
            LIVEKIT_URL = "wss://classroom.example.org";
          };
          description = "Extra environment variables for this instance (they win over the module's).";
        };

        ports = mkOption {
          type = types.nullOr (types.attrsOf types.port);
          readOnly = true;
          description = ''
            The instance's port plan as the daemon computes it (derived from the node name `main`
            or `node-N`, explicit `settings.node` ports winning), or null when neither gives every
            port. Read-only; this is what {option}`services.airclass-node.openFirewall` opens.
          '';
        };
      };

      config.ports = ports.forNode (nodeNameOf name config) (section config "node");
    };
in
{
  imports = [ ./provisioning.nix ];

  options.services.airclass-node = {
    enable = mkEnableOption "airclass-node, the AirClass live-classroom node daemon supervising LiveKit";

    package = mkOption {
      type = types.package;
      default = pkgs.airclass-node or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.airclass-node or (pkgs.callPackage ./nix/package.nix { })";
      description = "The airclass-node package (daemon, systemd template unit and target).";
    };

    livekitPackage = mkOption {
      type = types.package;
      default = pkgs.livekit;
      defaultText = literalExpression "pkgs.livekit";
      description = ''
        The LiveKit server the daemon supervises; its `bin/livekit-server` is passed as
        `LIVEKIT_BINARY`.
      '';
    };

    settings = mkOption {
      type = settingsFormat.type;
      default = { };
      example = literalExpression ''
        {
          cluster = { id = "school-a"; heartbeat_secs = 5; };
          livekit.port_mode = "mux";
          api.bind = "0.0.0.0";
        }
      '';
      description = ''
        Cluster-wide configuration, rendered as TOML to `/etc/airclass/airclass.toml` (see
        `docs/architecture.md` of airclass-node for the schema). Secrets never go here: see
        {option}`services.airclass-node.secrets`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open every enabled instance's ports in the NixOS firewall: LiveKit's HTTP/WebSocket
        port, the RTC TCP port and the control API port (TCP), the RTC UDP range, and UDP 5353
        for mDNS (when `cluster.mdns` is not false). The daemon's own nftables table is not
        used on NixOS (it cannot override the NixOS firewall's drop policy), so without this you
        must open the ports yourself.
      '';
    };

    secrets = {
      directory = mkOption {
        type = types.str;
        default = "/etc/airclass/secrets";
        description = ''
          Directory holding the secret files when their paths are not set one by one, and the
          directory {option}`services.airclass-node.secrets.generate` fills.
        '';
      };

      generate = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Create missing secrets in {option}`services.airclass-node.secrets.directory` at boot
          (`airclass-node secrets init`) before any instance starts. Existing files are kept.
          Suits a standalone node or a fresh main node; every node of a cluster needs the same
          LiveKit API key/secret and cluster secret, so copy them from main to the sub nodes.
        '';
      };

      livekitApiKeyFile = mkOption {
        type = types.str;
        default = "${cfg.secrets.directory}/livekit-api-key";
        defaultText = literalExpression ''"''${config.services.airclass-node.secrets.directory}/livekit-api-key"'';
        description = ''
          File with the LiveKit API key, passed with `LoadCredential=livekit-api-key:…`. A path
          string on the target machine: it is never copied into the world-readable Nix store.
        '';
      };

      livekitApiSecretFile = mkOption {
        type = types.str;
        default = "${cfg.secrets.directory}/livekit-api-secret";
        defaultText = literalExpression ''"''${config.services.airclass-node.secrets.directory}/livekit-api-secret"'';
        description = "File with the LiveKit API secret (at least 32 characters), credential `livekit-api-secret`.";
      };

      clusterSecretFile = mkOption {
        type = types.str;
        default = "${cfg.secrets.directory}/cluster-secret";
        defaultText = literalExpression ''"''${config.services.airclass-node.secrets.directory}/cluster-secret"'';
        description = "File with the HMAC key signing cluster messages (at least 32 characters), credential `cluster-secret`.";
      };

      appTokenSha256File = mkOption {
        type = types.str;
        default = "${cfg.secrets.directory}/app-token.sha256";
        defaultText = literalExpression ''"''${config.services.airclass-node.secrets.directory}/app-token.sha256"'';
        description = ''
          File with the SHA-256 (hex) of the application token that may call the join API
          (`echo -n TOKEN | airclass-node hash-token`), credential `app-token-sha256`.
        '';
      };

      redisPasswordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "File with the Redis password, credential `redis-password`; null when Redis has none.";
      };
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceModule);
      default = { };
      example = literalExpression ''
        {
          main = { mode = "main"; redisUrl = "redis://10.0.0.1:6379"; };
        }
      '';
      description = ''
        Instances to run, each as `airclass-node@NAME.service`. Name them `main` or `node-N`
        (1 ≤ N ≤ 15) to get the standard port plan; any other name needs explicit ports in its
        `settings.node`.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions =
      lib.concatLists (
        lib.mapAttrsToList (
          name: inst:
          let
            nodeName = nodeNameOf name inst;
            missing = ports.missing nodeName (section inst "node");
            cluster = section inst "cluster";
          in
          [
            {
              assertion = builtins.match "[A-Za-z0-9][A-Za-z0-9_.-]*" name != null;
              message = "services.airclass-node.instances.\"${name}\": an instance name may only contain letters, digits, '_', '.' and '-' (it becomes airclass-node@${name}.service).";
            }
            {
              assertion = missing == [ ];
              message = "services.airclass-node.instances.\"${name}\": node name \"${nodeName}\" is neither `main` nor `node-N` (1 ≤ N ≤ 15), so its ports cannot be derived; set ${lib.concatMapStringsSep ", " (k: "settings.node.${k}") missing}.";
            }
            {
              assertion = inst.ports == null || inst.ports.rtc_udp_start <= inst.ports.rtc_udp_end;
              message = "services.airclass-node.instances.\"${name}\": settings.node.rtc_udp_start is above rtc_udp_end.";
            }
            {
              assertion =
                inst.mode != "sub" || inst.mainUrl != null || (cluster.main_url or "") != "" || (cluster.mdns or true);
              message = "services.airclass-node.instances.\"${name}\": a `sub` instance needs a way to find main: set mainUrl (or settings.cluster.main_url), or keep cluster.mdns enabled.";
            }
          ]
        ) enabledInstances
      )
      ++ lib.mapAttrsToList (opt: path: {
        assertion = lib.hasPrefix "/" path && !(lib.hasPrefix builtins.storeDir path);
        message = "services.airclass-node.secrets.${opt} = \"${path}\": must be an absolute path outside ${builtins.storeDir} (the store is world-readable; put the secret on the machine and give its path as a string).";
      }) secretPaths
      ++ [
        {
          assertion = lib.length (lib.filter (i: i.mode == "main") (lib.attrValues enabledInstances)) <= 1;
          message = "services.airclass-node: more than one instance has mode = \"main\"; a cluster has one main node.";
        }
        {
          assertion =
            !cfg.secrets.generate
            || lib.all (opt: cfg.secrets.${opt} == "${cfg.secrets.directory}/${defaultSecretNames.${opt}}") (
              lib.attrNames defaultSecretNames
            );
          message = "services.airclass-node.secrets.generate creates the files under secrets.directory with their standard names; do not also set the individual *File options to other paths.";
        }
        (
          let
            withPorts = lib.filterAttrs (_: i: i.ports != null) enabledInstances;
            tcpUses = lib.concatLists (
              lib.mapAttrsToList (
                n: i:
                map (k: {
                  port = i.ports.${k};
                  what = "${n}.${k}";
                }) [
                  "livekit_port"
                  "rtc_tcp_port"
                  "api_port"
                ]
              ) withPorts
            );
            tcpClashes = lib.filter (g: lib.length g > 1) (
              lib.attrValues (lib.groupBy (u: toString u.port) tcpUses)
            );
            ranges = lib.mapAttrsToList (n: i: {
              inherit n;
              from = i.ports.rtc_udp_start;
              to = i.ports.rtc_udp_end;
            }) withPorts;
            udpClashes = lib.concatMap (
              a: map (b: "${a.n} and ${b.n} (UDP ${toString a.from}-${toString a.to} / ${toString b.from}-${toString b.to})") (
                lib.filter (b: a.n < b.n && a.from <= b.to && b.from <= a.to) ranges
              )
            ) ranges;
            clashes =
              map (g: "TCP ${toString (lib.head g).port}: ${lib.concatMapStringsSep ", " (u: u.what) g}") tcpClashes
              ++ udpClashes;
          in
          {
            assertion = clashes == [ ];
            message = "services.airclass-node: instances on this machine share ports: ${lib.concatStringsSep "; " clashes}. Give one of them explicit ports in settings.node.";
          }
        )
      ];

    warnings =
      lib.optional (
        instanceNames == [ ] && !cfg.provisioning.enable
      ) "services.airclass-node is enabled but no instance is: add services.airclass-node.instances.<name> (or enable services.airclass-node.provisioning)."
      ++ lib.concatLists (
        lib.mapAttrsToList (
          name: inst:
          lib.optional (
            inst.mode == "sub"
            && inst.redisUrl == null
            && !((section inst "redis") ? url)
            && !(inst.environment ? REDIS_URL)
          ) "services.airclass-node.instances.\"${name}\": a sub node uses redis://127.0.0.1:6379 unless redisUrl is set; every node of a cluster (and its LiveKit) must share main's Redis."
        ) enabledInstances
      );

    users.users.airclass = {
      isSystemUser = true;
      group = "airclass";
      description = "airclass-node daemon";
    };
    users.groups.airclass = { };

    environment.systemPackages = [ cfg.package ];

    environment.etc =
      {
        "airclass/airclass.toml".source = settingsFormat.generate "airclass.toml" cfg.settings;
      }
      // lib.mapAttrs' (
        name: inst:
        lib.nameValuePair (nodeFile name) {
          source = settingsFormat.generate "airclass-${name}.toml" inst.settings;
        }
      ) enabledInstances;

    # The template unit and the target come from the package, as on Debian.
    systemd.packages = [ cfg.package ];
    systemd.targets.airclass-node.wantedBy = [ "multi-user.target" ];

    systemd.services =
      lib.mapAttrs' (
        name: inst:
        lib.nameValuePair "airclass-node@${name}" {
          # A drop-in (overrides.conf) on the packaged template, not a unit of its own.
          overrideStrategy = "asDropin";
          wantedBy = [ "airclass-node.target" ];
          after = lib.optional cfg.secrets.generate "airclass-node-secrets.service";
          wants = lib.optional cfg.secrets.generate "airclass-node-secrets.service";
          restartTriggers = [
            config.environment.etc."airclass/airclass.toml".source
            config.environment.etc.${nodeFile name}.source
          ];
          environment =
            {
              MODE = inst.mode;
              LIVEKIT_BINARY = "${cfg.livekitPackage}/bin/livekit-server";
              # The NixOS firewall is authoritative: `airclass-node firewall open/close` (the
              # unit's ExecStartPre=+/ExecStopPost=+) become no-ops.
              AIRCLASS_FIREWALL = "external";
            }
            // lib.optionalAttrs (inst.mainUrl != null) { MAIN_NODE_URL = inst.mainUrl; }
            // lib.optionalAttrs (inst.redisUrl != null) { REDIS_URL = inst.redisUrl; }
            // inst.environment;
          serviceConfig =
            {
              LoadCredential = credentialLines;
              LimitNOFILE = lib.mkDefault 65536; # as the packaged template (issue 10)
            }
            // lib.optionalAttrs (inst.mode == "sub") {
              # A sub that starts before main's Redis answers exits 1 and is restarted; without a
              # start limit it keeps trying (every 10 s) until main is up, instead of failing
              # for good after the template's 5 starts in 300 s.
              RestartSec = "10s";
            };
          unitConfig = lib.optionalAttrs (inst.mode == "sub") { StartLimitIntervalSec = 0; };
        }
      ) enabledInstances
      // lib.optionalAttrs cfg.secrets.generate {
        airclass-node-secrets = {
          description = "Create missing airclass-node secrets";
          wantedBy = [ "airclass-node.target" ];
          before = [ "airclass-node.target" ];
          unitConfig.DefaultDependencies = false;
          after = [ "local-fs.target" ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            # secrets init sets 0640 root:airclass (app-token 0600); keep those modes.
            UMask = "0027";
            ExecStart = "${lib.getExe cfg.package} secrets init --dir ${lib.escapeShellArg cfg.secrets.directory}";
          };
        };
      };

    networking.firewall = mkIf cfg.openFirewall (
      let
        withPorts = lib.filter (i: i.ports != null) (lib.attrValues enabledInstances);
        mdns = lib.any (i: (section i "cluster").mdns or true) (lib.attrValues enabledInstances);
      in
      {
        allowedTCPPorts = lib.concatMap (i: [
          i.ports.livekit_port
          i.ports.rtc_tcp_port
          i.ports.api_port
        ] ++ lib.optional (i.ports ? livekit_metrics_port) i.ports.livekit_metrics_port) withPorts;
        allowedUDPPortRanges = map (i: {
          from = i.ports.rtc_udp_start;
          to = i.ports.rtc_udp_end;
        }) withPorts;
        allowedUDPPorts = lib.optional mdns ports.mdnsPort;
      }
    );
  };

  meta.maintainers = [ ];
}
