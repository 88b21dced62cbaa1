# Disk layout, boot loader and image build for the airclass appliance: a raw GPT disk image
# with an EFI system partition (label ESP, FAT32, mounted at /boot) and an ext4 root (label
# nixos) that grows to fill the disk on first boot. Built with nixpkgs' make-disk-image.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
{
  imports = [
    # Drivers for real machines (SATA, NVMe, USB storage, common NICs), not only VMs.
    (modulesPath + "/profiles/all-hardware.nix")
    (modulesPath + "/profiles/minimal.nix")
  ];

  boot.loader.systemd-boot.enable = true;
  # The image is written to a disk on another machine: install systemd-boot at the removable
  # fallback path as well (bootctl does) and do not touch this build's EFI variables.
  boot.loader.efi.canTouchEfiVariables = false;
  boot.growPartition = true;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
    options = [ "umask=0077" ];
  };

  system.build.applianceImage = import (modulesPath + "/../lib/make-disk-image.nix") {
    inherit config lib pkgs;
    name = "airclass-appliance";
    format = "raw";
    partitionTableType = "efi";
    diskSize = "auto";
    additionalSpace = "1024M";
    bootSize = "512M";
    copyChannel = false;
  };
}
