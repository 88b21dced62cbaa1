# Example appliance: one airclass-node instance (`main`, standalone) with a local Redis.
# Copy this module and adapt it (mode, advertise address, SSH keys); see docs/nix.md.
#
# No secret is baked into the image. At first boot, before any instance starts:
#   1. files the operator dropped into the `airclass/` folder of the EFI partition (FAT32,
#      writable from any OS after writing the image) are moved to /etc/airclass/secrets:
#        livekit-api-key  livekit-api-secret  cluster-secret
#        app-token (the plain application token) or app-token.sha256 (its hash)
#        authorized_keys (SSH public keys for root)
#   2. whatever is still missing is generated (`airclass-node secrets init`), including a fresh
#      application token in /etc/airclass/secrets/app-token (root only) when none was given.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.airclass-node;
  importSecrets = pkgs.writeShellApplication {
    name = "airclass-import-secrets";
    runtimeInputs = [ pkgs.coreutils ];
    text = ''
      src=/boot/airclass
      dest=${lib.escapeShellArg cfg.secrets.directory}
      install -d -m 0750 -o root -g airclass "$dest"
      [ -d "$src" ] || exit 0
      for name in livekit-api-key livekit-api-secret cluster-secret app-token.sha256; do
        if [ -s "$src/$name" ]; then
          install -m 0640 -o root -g airclass "$src/$name" "$dest/$name"
          rm -f "$src/$name"
          echo "imported $name from the EFI partition"
        fi
      done
      if [ -s "$src/app-token" ]; then
        # The plain token (root only); `airclass-node secrets init` derives the hash from it.
        install -m 0600 -o root -g root "$src/app-token" "$dest/app-token"
        rm -f "$src/app-token" "$dest/app-token.sha256"
        echo "imported the application token from the EFI partition"
      fi
      if [ -s "$src/authorized_keys" ]; then
        install -d -m 0700 /root/.ssh
        cat "$src/authorized_keys" >> /root/.ssh/authorized_keys
        chmod 0600 /root/.ssh/authorized_keys
        rm -f "$src/authorized_keys"
        echo "added SSH keys for root from the EFI partition"
      fi
    '';
  };
in
{
  networking.hostName = lib.mkDefault "airclass";
  networking.firewall.enable = true;

  services.airclass-node = {
    enable = true;
    openFirewall = true;
    secrets.generate = true;
    settings = {
      cluster.id = "airclass";
    };
    instances.main = {
      mode = "standalone";
      redisUrl = "redis://127.0.0.1:6379";
    };
  };

  # Local Redis for LiveKit and the cluster store; loopback only.
  services.redis.servers.airclass = {
    enable = true;
    port = 6379;
    bind = "127.0.0.1";
  };
  systemd.services."airclass-node@main" = {
    after = [ "redis-airclass.service" ];
    wants = [ "redis-airclass.service" ];
  };

  systemd.services.airclass-import-secrets = {
    description = "Import airclass-node secrets left on the EFI partition";
    wantedBy = [ "airclass-node.target" ];
    before = [
      "airclass-node-secrets.service"
      "airclass-node.target"
    ];
    requiredBy = [ "airclass-node-secrets.service" ];
    unitConfig.RequiresMountsFor = [ "/boot" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = lib.getExe importSecrets;
    };
  };

  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
    settings.PermitRootLogin = "prohibit-password";
  };

  system.stateVersion = "24.11";
}
