{
  description = "airclass-node: one node of an AirClass live-classroom cluster (supervises LiveKit under systemd)";

  # Pinned (flake.lock) to a nixos-25.11 revision: building the daemon needs Rust >= 1.88
  # (Cargo.toml's rust-version; its locked dependencies declare 1.88: redis 1.8, sysinfo 0.37,
  # icu 2.4 via url); nixos-25.05 ships 1.86 and 24.11 ships 1.82, too old. Any
  # nixpkgs from 24.11 on still *evaluates* this flake (scripts/nix-eval-offline.sh, 24.11 tree).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # The example appliance (nix/appliance/) for one system.
      appliance =
        system:
        lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.default
            ./nix/appliance/image.nix
            ./nix/appliance/configuration.nix
            { services.airclass-node.package = self.packages.${system}.airclass-node; }
          ];
        };

      threeNode =
        pkgs: discovery:
        import ./nix/tests/three-node.nix {
          inherit pkgs discovery;
          airclassModule = self.nixosModules.default;
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.airclass-node;
        };
    in
    {
      overlays.default = final: _prev: {
        airclass-node = final.callPackage ./nix/package.nix { };
      };

      # An attribute set, not a bare path: Nix 2.8's `flake check` rejects the latter.
      nixosModules.default = {
        imports = [ ./nix/module.nix ];
      };

      packages = forAllSystems (
        system: pkgs: {
          airclass-node = pkgs.callPackage ./nix/package.nix { };
          default = self.packages.${system}.airclass-node;
          # Raw GPT disk image (EFI system partition + ext4 root), see docs/nix.md.
          appliance-image = (appliance system).config.system.build.applianceImage;
        }
      );

      nixosConfigurations.appliance = appliance "x86_64-linux";

      checks = forAllSystems (
        system: pkgs: {
          package = self.packages.${system}.airclass-node;

          # The port plan in nix/ports.nix against the built daemon's own `ports --json`.
          ports = pkgs.runCommand "airclass-node-ports-check" {
            nativeBuildInputs = [
              self.packages.${system}.airclass-node
              pkgs.jq
            ];
            expected = (import ./nix/ports.nix).json (
              [ "main" ] ++ map (n: "node-${toString n}") (lib.range 1 15)
            );
          } ''
            echo -n "$expected" | jq -S . > expected.json
            : > empty.toml
            mkdir nodes
            for name in main $(seq -f 'node-%g' 1 15); do
              airclass-node --config empty.toml --nodes-dir nodes ports --instance "$name" --json
            done | jq -S -s . > actual.json
            diff -u expected.json actual.json
            touch $out
          '';

          # Cluster found over mDNS.
          three-node = threeNode pkgs "mdns";
          # The same scenarios with mDNS off and MAIN_NODE_URL set: the fallback for networks
          # that do not carry multicast between the VMs (not confirmed either way here, as the
          # VM tests could not be run where this was written).
          three-node-main-url = threeNode pkgs "main-url";
          # The appliance's first-boot provisioning on NixOS: four machines, one configuration,
          # told who they are by credentials and the kernel command line (one is not told).
          appliance = import ./nix/tests/appliance.nix {
            inherit pkgs;
            airclassModule = self.nixosModules.default;
            package = self.packages.${system}.airclass-node;
          };
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.airclass-node ];
            packages = [
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              pkgs.rust-analyzer
              pkgs.livekit
              pkgs.redis
              pkgs.nftables
              pkgs.jq
            ];
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-rfc-style);
    };
}
