# The example appliance: one image for every node, provisioned at first boot like the Debian
# appliance image (docs/appliance.md): no instance is declared here; `airclass-node provision`
# (services.airclass-node.provisioning, ../provisioning.nix) reads systemd credentials, a
# provision.toml on the EFI partition (/boot/airclass/) or a USB stick labelled AIRCLASS, or
# airclass.NAME= on the kernel command line, then starts airclass-node@NODE. Nothing secret and
# nothing node-specific is in the image; an unprovisioned machine says on its console what is
# missing. Copy this module to change settings that are the same on every node.
{ lib, ... }:
{
  services.airclass-node = {
    enable = true;
    provisioning.enable = true;
    settings = {
      livekit.log_level = "info";
    };
  };

  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
    settings.KbdInteractiveAuthentication = false;
    settings.PermitRootLogin = "prohibit-password";
  };

  # Keep the journal across reboots, bounded.
  services.journald.extraConfig = "SystemMaxUse=256M";

  system.stateVersion = lib.mkDefault "24.11";
}
