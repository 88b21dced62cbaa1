# The airclass-node daemon as a Nix package: the binary, the systemd template unit and target
# (binary path rewritten to the store), the sysusers snippet and the docs. The test double
# `livekit-standin` is never built nor installed.
{
  lib,
  rustPlatform,
}:

let
  cargoToml = lib.importTOML ../Cargo.toml;
  root = ../.;
in
rustPlatform.buildRustPackage {
  pname = "airclass-node";
  inherit (cargoToml.package) version;

  # Only what cargo and the install phase read, so edits to docs, nix/ or debian/ do not
  # rebuild the daemon. Cargo.toml names benches/ and tests/livekit-standin/ as targets, so
  # they must be present even though they are not built. (cleanSourceWith rather than
  # lib.fileset: the latter cannot take a flake's own store path as root under Nix < 2.14.)
  src = lib.cleanSourceWith {
    name = "airclass-node-source";
    src = root;
    filter =
      path: type:
      let
        rel = lib.removePrefix (toString root + "/") (toString path);
        top = builtins.head (lib.splitString "/" rel);
      in
      builtins.elem top [
        "Cargo.toml"
        "Cargo.lock"
        "build.rs"
        "README.md"
        "src"
        "benches"
        "tests"
        "systemd"
        "docs"
      ];
  };

  # Offline-friendly: the hashes come from Cargo.lock, nothing to bump per dependency change.
  cargoLock.lockFile = ../Cargo.lock;

  # Build and install only the daemon; `livekit-standin` is a test double.
  cargoBuildFlags = [
    "--bin"
    "airclass-node"
  ];

  # Only the library's unit tests (pure cores: ports, rendering, placement, membership,
  # signing). The integration tests spawn the daemon against Redis, systemd and a LiveKit
  # stand-in, none of which exist in the build sandbox; the NixOS VM test covers that ground.
  doCheck = true;
  cargoTestFlags = [ "--lib" ];

  postInstall = ''
    if [ -e "$out/bin/livekit-standin" ]; then
      echo "livekit-standin is a test double and must not be installed" >&2
      exit 1
    fi

    unitdir=$out/lib/systemd/system
    install -Dm0644 systemd/airclass-node@.service "$unitdir/airclass-node@.service"
    install -Dm0644 systemd/airclass-node.target "$unitdir/airclass-node.target"
    substituteInPlace "$unitdir/airclass-node@.service" \
      --replace-fail /usr/bin/airclass-node "$out/bin/airclass-node"
    # Credential paths are distribution-specific: the Debian template points at
    # /etc/airclass/secrets. On NixOS the module's per-instance drop-ins are the only source of
    # LoadCredential= (not relying on an empty assignment resetting the template's list).
    sed -i '/^LoadCredential=/d' "$unitdir/airclass-node@.service"
    if grep -q '^LoadCredential=' "$unitdir/airclass-node@.service"; then
      echo "the template still carries Debian credential paths" >&2
      exit 1
    fi
    if grep -n '/usr/s\?bin/airclass-node' "$unitdir"/*; then
      echo "a unit still points at /usr/bin/airclass-node" >&2
      exit 1
    fi
    # The sysusers snippet is shipped for completeness; the NixOS module declares the user
    # with users.users instead.
    install -Dm0644 systemd/airclass-node.sysusers "$out/lib/sysusers.d/airclass-node.conf"

    if [ -d docs ]; then
      mkdir -p "$out/share/doc/airclass-node"
      cp -r docs/. "$out/share/doc/airclass-node/"
    fi
  '';

  meta = {
    description = cargoToml.package.description;
    homepage = cargoToml.package.homepage;
    license = lib.licenses.asl20;
    mainProgram = "airclass-node";
    platforms = lib.platforms.linux;
  };
}
