{
  # `nix develop`      a shell with the pinned Rust toolchain, the C build dependencies of
  #                    librdkafka and the services' command-line clients.
  # `nix build`        the harness (its `platform-verify` binary), built with crane.
  # `nix flake check`  formatting, clippy with warnings denied, the unit tests and the build.
  #
  # What never runs here: the platform suites. They start containers, and the Nix build
  # sandbox has neither a Docker socket nor a network. They run with `cargo test --test
  # platform` (see README.md, "Nix and CI"). harness/tests/flake_lock.rs keeps this file and
  # flake.lock consistent (input names, URLs, follows) without needing Nix.
  description = "platform-harness: spins up a data platform with testcontainers and verifies it with declarative suites";

  inputs = {
    # A release branch, not nixos-unstable: the shell's tools move only on a deliberate
    # `nix flake update nixpkgs`. The Rust toolchain does not come from here (see below).
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

    # The exact toolchain of rust-toolchain.toml (1.95.0 with rustfmt and clippy), the same
    # one rustup gives everyone else. It reuses our nixpkgs rather than locking its own.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # Builds the workspace in two derivations (dependencies, then the crate), so checks and
    # the package share one build of the ~400 dependencies. crane has no inputs of its own.
    crane.url = "github:ipetkov/crane";
  };

  outputs =
    {
      self,
      nixpkgs,
      rust-overlay,
      crane,
    }:
    let
      # Linux only: the harness drives a Docker engine, and CI runs on Linux.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f (perSystem system));

      perSystem =
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ rust-overlay.overlays.default ];
          };
          inherit (pkgs) lib;

          # One source of truth for the toolchain: rust-toolchain.toml. Bumping the channel
          # there may need `nix flake update rust-overlay` if the lock predates that release.
          rustToolchain = pkgs.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml;
          craneLib = (crane.mkLib pkgs).overrideToolchain (
            p: p.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml
          );

          # Only what cargo needs (*.rs, *.toml, Cargo.lock): editing the README, the image
          # kit or the workflows does not rebuild anything. suites/*.toml and
          # fixtures/platform.toml are kept as well (they are .toml) but no build step reads
          # them; the unit tests (`--lib`) are self-contained.
          src = craneLib.cleanCargoSource ./.;

          # The workspace root has no [package]; name and version come from the crate.
          inherit (craneLib.crateNameFromCargoToml { cargoToml = ./harness/Cargo.toml; }) pname version;

          commonArgs = {
            inherit src pname version;
            strictDeps = true;

            # rdkafka is built through the harness's `rdkafka-cmake` feature: rdkafka-sys
            # compiles the bundled librdkafka with cmake during `cargo build` (its default
            # configure script wants /usr/bin/env, which the sandbox lacks). That CMake
            # build looks for OpenSSL, zlib and curl; SASL is not enabled.
            cargoExtraArgs = "--locked --features rdkafka-cmake";
            nativeBuildInputs = [
              pkgs.cmake
              pkgs.pkg-config
            ];
            buildInputs = [
              pkgs.openssl
              pkgs.zlib
              pkgs.curl
            ];
            # cmake is here for build.rs, not for this derivation: keep nixpkgs' cmake setup
            # hook from taking over the configure phase.
            dontUseCmakeConfigure = true;
          };

          # Every dependency, compiled once; the checks and the package reuse it.
          cargoArtifacts = craneLib.buildDepsOnly commonArgs;

          harness = craneLib.buildPackage (
            commonArgs
            // {
              inherit cargoArtifacts;
              # No tests in the package build: the integration tests (tests/platform.rs,
              # tests/broken_*.rs, tests/verify_command.rs, ...) start containers, which the
              # sandbox cannot. The unit tests run in checks.unit-tests instead.
              doCheck = false;
              meta = {
                description = "Verifies a data platform (PostgreSQL, MinIO, Kafka, MLflow, Trino) with declarative suites";
                license = lib.licenses.asl20;
                mainProgram = "platform-verify";
              };
            }
          );
        in
        {
          inherit harness;

          checks = {
            # The package itself: `nix flake check` also proves it builds.
            package = harness;

            # `cargo fmt --check`. Only the sources are needed; cargoFmt takes no cargo flags
            # such as --locked, hence not commonArgs.
            fmt = craneLib.cargoFmt { inherit src pname version; };

            # Every target (lib, bins, integration tests), warnings are errors. This compiles
            # the integration tests but does not run them.
            clippy = craneLib.cargoClippy (
              commonArgs
              // {
                inherit cargoArtifacts;
                cargoClippyExtraArgs = "--all-targets -- -D warnings";
              }
            );

            # The unit tests only: everything under harness/tests/ needs Docker (or, for
            # flake_lock.rs, the repository's flake files, which the filtered source omits).
            unit-tests = craneLib.cargoTest (
              commonArgs
              // {
                inherit cargoArtifacts;
                cargoTestExtraArgs = "--lib";
              }
            );
          };

          devShell = pkgs.mkShell {
            # Tools that run on the build machine.
            nativeBuildInputs = [
              rustToolchain # cargo, rustc, rustfmt, clippy at the version of rust-toolchain.toml
              pkgs.cmake
              pkgs.pkg-config
              pkgs.cargo-nextest
              pkgs.actionlint # lints .github/workflows (also done by .ci/check-offline)

              # Clients to poke at a running platform by hand. docker-client is the CLI only:
              # the engine is the system's (Docker daemons do not run from a dev shell).
              pkgs.docker-client
              pkgs.postgresql # psql
              pkgs.kcat
              pkgs.minio-client # mc
              pkgs.trino-cli
            ];
            # Libraries librdkafka's cmake build links against (found through pkg-config).
            buildInputs = [
              pkgs.openssl
              pkgs.zlib
              pkgs.curl
            ];
            # As in the package: the cmake hook must not act on `cargo` runs in this shell.
            dontUseCmakeConfigure = true;
          };
        };
    in
    {
      packages = forAllSystems (s: {
        default = s.harness;
        platform-harness = s.harness;
      });

      checks = forAllSystems (s: s.checks);

      devShells = forAllSystems (s: {
        default = s.devShell;
      });
    };
}
