#!/usr/bin/env bash
# Builds keyswitch's release into dist/: one archive per platform and the npm packages.
#   scripts/release.sh          every platform this machine can build; the others are skipped,
#                               each with the reason (the Apple ones need the macOS SDK to link)
#   scripts/release.sh --host   only this machine's own build, from target/release (what
#                               `cargo build --release` made: CI reuses the benchmark's build)
# dist/ then holds:
#   keyswitch-VERSION-TARGET.tar.gz (.zip for Windows): keyswitch, README.md, LICENSE,
#       CHANGELOG.md, install.sh and SHA256SUMS of those, in a folder of the same name
#   npm/*.tgz: the main npm package (KEYSWITCH_NPM_NAME, default @keyswitch/cli), whose `bin` is
#       a small launcher, and one package per platform built, named MAIN-OS-CPU and selected by
#       npm through `os`/`cpu` (no install scripts, no network at run time)
#   SHA256SUMS of the archives and npm tarballs
# Linux x86_64 ships as a static musl binary: the vendored libdbus builds with musl-gcc
# (apt-get install musl-tools; rustup target add x86_64-unknown-linux-musl). Without those, the
# glibc build ships instead, and the script says so. Windows needs x86_64-pc-windows-gnu and
# gcc-mingw-w64-x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."

host_only=false
case "${1:-}" in
    --host) host_only=true ;;
    "") ;;
    *) echo "release: unknown argument $1; usage: scripts/release.sh [--host]" >&2; exit 2 ;;
esac

npm_name=${KEYSWITCH_NPM_NAME:-@keyswitch/cli}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "release: no version in Cargo.toml" >&2; exit 1; }
# Archives carry the last commit's time, not the build's, so the same commit packs the same.
# Not exported: a build script reruns when SOURCE_DATE_EPOCH changes, and cargo would then
# rebuild what `cargo build --release` (the benchmark, install.sh) built, and back again.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

dist=dist
rm -rf "$dist"
mkdir -p "$dist/npm"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

built=()   # "target npm-os npm-cpu binary-path"
skipped=() # "target: reason"

# npm's names for a Rust target's OS and CPU.
npm_os() { case "$1" in *-linux-*) echo linux ;; *-windows-*) echo win32 ;; *-apple-darwin) echo darwin ;; esac; }
npm_cpu() { case "$1" in x86_64-*) echo x64 ;; aarch64-*) echo arm64 ;; esac; }
exe_of() { case "$1" in *-windows-*) echo keyswitch.exe ;; *) echo keyswitch ;; esac; }

has_target() { [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]; }

# cargo build for one target; records it in `built`, or returns 1 with the log shown.
build() {
    local target=$1
    echo "release: building $target"
    if cargo build --release --locked --quiet --target "$target"; then
        built+=("$target $(npm_os "$target") $(npm_cpu "$target") target/$target/release/$(exe_of "$target")")
    else
        return 1
    fi
}

if $host_only; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    if [ -z "$(npm_os "$host")" ] || [ -z "$(npm_cpu "$host")" ]; then
        echo "release: no npm platform for host $host" >&2
        exit 1
    fi
    cargo build --release --locked --quiet
    built+=("$host $(npm_os "$host") $(npm_cpu "$host") target/release/$(exe_of "$host")")
else
    # Linux x86_64: static musl, else glibc.
    linux_why=
    if ! has_target x86_64-unknown-linux-musl; then
        linux_why="the musl target is not installed (rustup target add x86_64-unknown-linux-musl)"
    elif ! command -v musl-gcc >/dev/null 2>&1; then
        linux_why="musl-gcc, which builds the vendored libdbus, is missing (apt-get install musl-tools)"
    elif ! build x86_64-unknown-linux-musl; then
        linux_why="the musl build failed (above)"
    fi
    if [ -n "$linux_why" ]; then
        echo "release: Linux x86_64 ships the glibc build: $linux_why" >&2
        build x86_64-unknown-linux-gnu
    fi

    if ! has_target x86_64-pc-windows-gnu; then
        skipped+=("x86_64-pc-windows-gnu: target not installed (rustup target add x86_64-pc-windows-gnu)")
    elif ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
        skipped+=("x86_64-pc-windows-gnu: the MinGW-w64 linker is missing (apt-get install gcc-mingw-w64-x86-64)")
    else
        build x86_64-pc-windows-gnu
    fi

    for target in x86_64-apple-darwin aarch64-apple-darwin; do
        linker_var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER"
        if [ "$(uname -s)" != Darwin ] && [ -z "${!linker_var:-}" ]; then
            skipped+=("$target: linking needs Apple's SDK, which is not here; build on a Mac, or set $linker_var to an osxcross clang")
        elif ! has_target "$target"; then
            skipped+=("$target: target not installed (rustup target add $target)")
        else
            build "$target"
        fi
    done
fi

# One archive per target.
for entry in "${built[@]}"; do
    read -r target _ _ binary <<<"$entry"
    name="keyswitch-$version-$target"
    dir="$stage/$name"
    mkdir -p "$dir"
    install -m 0755 "$binary" "$dir/$(exe_of "$target")"
    install -m 0644 README.md LICENSE CHANGELOG.md "$dir/"
    install -m 0755 install.sh "$dir/"
    (cd "$dir" && sha256sum -- * >SHA256SUMS)
    find "$dir" -exec touch -h -d "@$epoch" {} +
    case "$target" in
        *-windows-*)
            (cd "$stage" && python3 -m zipfile -c "$OLDPWD/$dist/$name.zip" "$name") ;;
        *)
            tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$name" \
                | gzip -9 -n >"$dist/$name.tar.gz" ;;
    esac
    echo "release: $(ls "$dist/$name".*)"
done

# npm: a package per platform, and the main package naming them as optional dependencies.
if ! command -v npm >/dev/null 2>&1; then
    skipped+=("npm packages: npm is missing (apt-get install npm)")
else
    optional=()
    for entry in "${built[@]}"; do
        read -r target os cpu binary <<<"$entry"
        pkg="$npm_name-$os-$cpu"
        dir="$stage/npm/$os-$cpu"
        mkdir -p "$dir/bin"
        install -m 0755 "$binary" "$dir/bin/$(exe_of "$target")"
        install -m 0644 LICENSE "$dir/"
        sed -e "s|@NAME@|$pkg|; s|@VERSION@|$version|; s|@TARGET@|$target|; s|@MAIN@|$npm_name|" \
            -e "s|@OS@|$os|; s|@CPU@|$cpu|; s|@EXE@|$(exe_of "$target")|" \
            npm/platform/package.json >"$dir/package.json"
        printf '# %s\n\nThe %s binary of keyswitch. Install `%s`, which picks this package on %s-%s.\n' \
            "$pkg" "$target" "$npm_name" "$os" "$cpu" >"$dir/README.md"
        optional+=("$pkg")
    done
    dir="$stage/npm/main"
    mkdir -p "$dir/bin"
    install -m 0755 npm/main/bin/keyswitch.js "$dir/bin/"
    install -m 0644 README.md LICENSE "$dir/"
    description=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    # The template's own fields stay; these are filled in.
    node -e '
        const [name, version, description, ...optional] = process.argv.slice(1);
        const pkg = JSON.parse(require("fs").readFileSync(0, "utf8"));
        Object.assign(pkg, { name, version, description });
        pkg.optionalDependencies = Object.fromEntries(optional.map((p) => [p, version]));
        process.stdout.write(JSON.stringify(pkg, null, 2) + "\n");
    ' "$npm_name" "$version" "$description" "${optional[@]}" <npm/main/package.json >"$dir/package.json"
    for dir in "$stage"/npm/*/; do
        find "$dir" -exec touch -h -d "@$epoch" {} +
        npm pack --silent --ignore-scripts --pack-destination "$dist/npm" "$dir" >/dev/null
    done
    echo "release: $(echo "$dist"/npm/*.tgz)"
    if [ ${#skipped[@]} -gt 0 ]; then
        echo "release: note: the main npm package names only the platforms built here; publish it together with every platform package" >&2
    fi
fi

shopt -s nullglob
(cd "$dist" && sha256sum -- *.tar.gz *.zip npm/*.tgz >SHA256SUMS)

for s in "${skipped[@]}"; do echo "release: skipped $s" >&2; done
echo "release: done: $dist/ (version $version)"
