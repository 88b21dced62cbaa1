# services.airclass-node.provisioning: the appliance's first-boot provisioning on NixOS, with the
# same semantics as the Debian appliance image (docs/appliance.md): `airclass-node provision`
# runs at every boot before the network and the node, and reads, highest precedence first,
#   systemd credentials  airclass.NAME or airclass.provision (a whole provision.toml), e.g. from
#                        SMBIOS type 11, qemu fw_cfg or systemd.set_credential=
#   airclass/provision.toml on a USB stick labelled AIRCLASS, or on the EFI partition (/boot):
#                        applied, then overwritten with zeros and deleted
#   airclass.NAME=VALUE  on the kernel command line (no secrets)
#   /etc/airclass/appliance.toml  the earlier provisioning
# then writes /etc/airclass/nodes/NODE.toml, the secrets, main's Redis config, the host name
# airclass-NODE, SSH keys / console password, and starts airclass-node@NODE. No instance is
# declared in Nix: which one runs is decided on the machine. Nothing secret is in the store.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.airclass-node;
  ports = import ./ports.nix;
  names = [ "main" ] ++ map (n: "node-${toString n}") (lib.range 1 15);
  plans = map (n: ports.derive n) names;
in
{
  options.services.airclass-node.provisioning = {
    enable = lib.mkEnableOption ''
      first-boot provisioning (`airclass-node provision`, airclass-provision.service): the node
      name, mode, cluster, secrets and operator access come from systemd credentials, a
      provision.toml on the EFI partition or a USB stick, or the kernel command line, as on the
      Debian appliance image; instances are then not declared in Nix
    '';
    espMountPoint = lib.mkOption {
      type = lib.types.str;
      default = config.boot.loader.efi.efiSysMountPoint;
      defaultText = lib.literalExpression "config.boot.loader.efi.efiSysMountPoint";
      description = "Where the EFI system partition is mounted (airclass/provision.toml on it is read).";
    };
  };

  config = lib.mkIf (cfg.enable && cfg.provisioning.enable) {
    assertions = [
      {
        assertion = cfg.instances == { };
        message = "services.airclass-node.provisioning decides the instance at boot; do not also declare services.airclass-node.instances.";
      }
    ];

    systemd.services.airclass-provision = {
      description = "AirClass appliance provisioning (node name, mode, cluster, secrets)";
      documentation = [ "file:${cfg.package}/share/doc/airclass-node/appliance.md" ];
      wantedBy = [ "sysinit.target" ];
      wants = [
        "network-pre.target"
        "getty-pre.target"
      ];
      after = [
        "local-fs.target"
        "systemd-udev-trigger.service"
        "systemd-journald.socket"
      ];
      before = [
        "network-pre.target"
        "systemd-networkd.service"
        "getty-pre.target"
        "systemd-user-sessions.service"
        "sshd.service"
        "airclass-redis.service"
        "airclass-node.target"
        "shutdown.target"
      ];
      conflicts = [ "shutdown.target" ];
      unitConfig = {
        DefaultDependencies = false;
        RequiresMountsFor = [ cfg.provisioning.espMountPoint ];
      };
      # mount/umount (USB stick), udevadm and systemctl, chpasswd (console password)
      path = [
        pkgs.util-linux
        config.systemd.package
        pkgs.shadow
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${lib.getExe cfg.package} provision --esp ${lib.escapeShellArg cfg.provisioning.espMountPoint}";
        StandardOutput = "journal+console";
        StandardError = "journal+console";
        TimeoutStartSec = 120;
      };
    };

    # main's Redis, for the whole cluster, only where provisioning wrote its config (main).
    systemd.services.airclass-redis = {
      description = "Redis of the AirClass cluster (main node)";
      wantedBy = [ "multi-user.target" ];
      after = [
        "network.target"
        "airclass-provision.service"
      ];
      before = [ "airclass-node.target" ];
      unitConfig.ConditionPathExists = "/etc/airclass/redis/redis.conf";
      serviceConfig = {
        Type = "notify";
        ExecStart = "${pkgs.redis}/bin/redis-server %d/redis.conf";
        LoadCredential = "redis.conf:/etc/airclass/redis/redis.conf";
        DynamicUser = true;
        StateDirectory = "airclass-redis";
        StateDirectoryMode = "0700";
        Restart = "always";
        RestartSec = "2s";
        LimitNOFILE = 10032;
        UMask = "0077";
        CapabilityBoundingSet = "";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
        MemoryDenyWriteExecute = true;
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
      };
    };

    # Every instance the provisioning may start: after it (and main's Redis), the store's LiveKit,
    # the NixOS firewall (below) instead of the daemon's own table, and no start limit, so a sub
    # booting before main's Redis answers keeps retrying every RestartSec.
    systemd.services."airclass-node@" = {
      overrideStrategy = "asDropin";
      after = [
        "airclass-provision.service"
        "airclass-redis.service"
      ];
      unitConfig.StartLimitIntervalSec = 0;
      environment = {
        LIVEKIT_BINARY = "${cfg.livekitPackage}/bin/livekit-server";
        AIRCLASS_FIREWALL = "external";
      };
      serviceConfig.RestartSec = "10s";
    };

    # The node name is only known on the machine: open what any name may use (main, node-1 …
    # node-15), Redis for main, and mDNS.
    networking.firewall = {
      enable = lib.mkDefault true;
      allowedTCPPorts = [ 6379 ] ++ lib.concatMap (p: [ p.livekit_port p.rtc_tcp_port p.api_port ]) plans;
      allowedUDPPortRanges = map (p: {
        from = p.rtc_udp_start;
        to = p.rtc_udp_end;
      }) plans;
      allowedUDPPorts = [ ports.mdnsPort ];
    };

    # DHCP on every wired interface; a provisioned static address goes to
    # /run/systemd/network/10-airclass-static.network, which wins.
    networking.useNetworkd = true;
    networking.useDHCP = false;
    systemd.network.networks."80-airclass-wired" = {
      matchConfig.Type = "ether";
      networkConfig = {
        DHCP = "yes";
        LinkLocalAddressing = "ipv6";
      };
    };
    systemd.network.wait-online = {
      anyInterface = true;
      timeout = 30;
    };
    # airclass-node answers mDNS itself; resolved must not claim UDP 5353 or answer LLMNR.
    services.resolved = {
      llmnr = "false";
      extraConfig = "MulticastDNS=no";
    };
    # Set by provisioning (airclass-NODE), so /etc/hostname must not be managed here.
    networking.hostName = "";
    # chpasswd (access.console_password_hash) needs mutable users.
    users.mutableUsers = true;
  };
}
