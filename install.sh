#!/usr/bin/env bash
# Installs keyswitch and wires it into Claude Code, in one command. Works from an unpacked release
# archive (installs the binary that came with it; no Rust needed) and from a source checkout
# (builds it with cargo):
#   ./install.sh                  install to ~/.local/bin (PREFIX=/usr/local ./install.sh for
#                                 /usr/local/bin), run `keyswitch install` (proxy mode;
#                                 subscription first over a Claude Pro/Max login)
#   ./install.sh --helper         ... in helper mode (nothing running in the background)
#   ./install.sh --subscription-first
#                                 ... your Claude subscription first, API keys only at its limit
#   ./install.sh --statusline     ... and show the key in Claude Code's status line
#   ./install.sh --listen 127.0.0.1:PORT
#                                 ... with the proxy on another port
#   ./install.sh --force          ... replacing an apiKeyHelper you already had
#   ./install.sh --max-retries 2  ... helper mode: fewer 429 retries before switching
#   ./install.sh --uninstall      undo: take keyswitch out of Claude Code, delete the binary
#   ./install.sh --uninstall --purge [--yes]
#                                 ... and first delete the keys from the keychain, the config
#                                 and the state (asks first; --yes when there is no terminal)
# Safe to run again. Your keys stay in the keychain unless you purge.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

exe=keyswitch
case "$(uname -s)" in MINGW* | MSYS* | CYGWIN*) exe=keyswitch.exe ;; esac

prefix=${PREFIX:-$HOME/.local}
bindir="$prefix/bin"
target="$bindir/$exe"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# The arguments are checked before anything is built or changed: --uninstall may come anywhere,
# and install's own flags are passed on to `keyswitch install`.
uninstall=0 rest=() expect_value=
for arg in "$@"; do
    if [ -n "$expect_value" ]; then
        rest+=("$arg") expect_value=
        continue
    fi
    case "$arg" in
        --uninstall) uninstall=1 ;;
        -h | --help) usage; exit 0 ;;
        --max-retries | --listen | --settings) rest+=("$arg") expect_value=1 ;;
        --max-retries=* | --listen=* | --settings=* | --helper | --proxy | --statusline | --force | --keys-only | --subscription-first | --purge | --yes) rest+=("$arg") ;;
        *)
            echo "install.sh: unknown argument $arg: see ./install.sh --help" >&2
            exit 2
            ;;
    esac
done
if [ -n "$expect_value" ]; then
    echo "install.sh: ${rest[${#rest[@]}-1]} needs a value: see ./install.sh --help" >&2
    exit 2
fi
if [ "$uninstall" = 0 ]; then
    for arg in ${rest[@]+"${rest[@]}"}; do
        case "$arg" in --purge | --yes)
            echo "install.sh: $arg goes with --uninstall: run ./install.sh --uninstall --purge [--yes]" >&2
            exit 2
            ;;
        esac
    done
fi

if [ "$uninstall" = 1 ]; then
    purge=() yes=()
    for arg in ${rest[@]+"${rest[@]}"}; do
        case "$arg" in
            --purge) purge=(--purge) ;;
            --yes) yes=(--yes) ;;
            *)
                echo "install.sh: --uninstall takes --purge and --yes, not $arg: run ./install.sh --uninstall [--purge [--yes]]" >&2
                exit 2
                ;;
        esac
    done
    if [ ${#yes[@]} -gt 0 ] && [ ${#purge[@]} -eq 0 ]; then
        echo "install.sh: --yes goes with --purge: run ./install.sh --uninstall --purge --yes" >&2
        exit 2
    fi
    if [ -x "$target" ]; then
        # The binary does the work, so it goes last; a purge refused or failed keeps it for
        # another try.
        status=0
        "$target" uninstall ${purge[@]+"${purge[@]}"} ${yes[@]+"${yes[@]}"} || status=$?
        if [ "$status" != 0 ]; then
            echo "install.sh: kept $target, as the uninstall did not finish (see above)" >&2
            exit "$status"
        fi
        rm -f "$target"
        if [ ${#purge[@]} -gt 0 ]; then
            echo "install.sh: removed $target"
        else
            echo "install.sh: removed $target; your keys, config and state stay (to delete them too, install again and run ./install.sh --uninstall --purge)"
        fi
    else
        # Installed with another PREFIX? Say where, rather than report success for nothing.
        found=$(command -v "$exe" 2>/dev/null || true)
        if [ -n "$found" ]; then
            echo "install.sh: no keyswitch at $target, but there is one at $found: run PREFIX=$(dirname "$(dirname "$found")") ./install.sh --uninstall (or \`$found uninstall\` if something else installed it)" >&2
            exit 1
        fi
        echo "install.sh: no keyswitch at $target nor on PATH; nothing to remove" >&2
    fi
    exit 0
fi

# A release archive holds the binary and no Cargo.toml; a source checkout the reverse.
if [ -f "$exe" ] && [ ! -f Cargo.toml ]; then
    built="$here/$exe"
    # SHA256SUMS comes in the archive: it catches a damaged download or unpacking, not tampering
    # (whoever could change the binary could change the sums too).
    if [ ! -f SHA256SUMS ]; then
        echo "install.sh: warning: SHA256SUMS is missing from this folder; installing $exe unchecked" >&2
    else
        if command -v sha256sum >/dev/null 2>&1; then
            sum=(sha256sum)
        elif command -v shasum >/dev/null 2>&1; then
            sum=(shasum -a 256)
        else
            sum=()
            echo "install.sh: warning: neither sha256sum nor shasum is installed; installing $exe unchecked" >&2
        fi
        if [ ${#sum[@]} -gt 0 ] && ! grep -E "^[0-9a-f]{64} [ *]$exe\$" SHA256SUMS | "${sum[@]}" -c --status 2>/dev/null; then
            echo "install.sh: $exe does not match its checksum in SHA256SUMS (a damaged download?): download the archive again" >&2
            exit 1
        fi
    fi
    if ! "$built" --version >/dev/null 2>&1; then
        echo "install.sh: the $exe in $here does not run on this machine ($(uname -sm)): download the archive for your platform" >&2
        exit 1
    fi
elif [ -f Cargo.toml ]; then
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install.sh: cargo is missing: install Rust (https://rustup.rs), then run ./install.sh again; or install a release archive or the npm package, which need no Rust (see README)" >&2
        exit 1
    fi
    if ! command -v cc >/dev/null 2>&1; then
        echo "install.sh: a C compiler is missing (keyswitch builds libdbus from source): install gcc or clang, then run ./install.sh again" >&2
        exit 1
    fi
    echo "install.sh: building keyswitch (release)..."
    cargo build --release --locked --quiet
    built="$here/target/release/$exe"
else
    echo "install.sh: $here holds neither a keyswitch binary nor Cargo.toml: run the install.sh of an unpacked release archive or of a source checkout" >&2
    exit 1
fi

mkdir -p "$bindir"
# Copy to a temporary name and rename, so a running keyswitch is never half-overwritten.
install -m 0755 "$built" "$target.new"
mv -f "$target.new" "$target"
echo "install.sh: installed $target"

case ":$PATH:" in
    *":$bindir:"*) ;;
    *) echo "install.sh: note: $bindir is not on your PATH; add it in your shell profile: export PATH=\"$bindir:\$PATH\"" ;;
esac

# `keyswitch install` wires Claude Code and prints the next steps, written so that they work as
# printed (the full path when this keyswitch is not the one on PATH).
"$target" install ${rest[@]+"${rest[@]}"}
