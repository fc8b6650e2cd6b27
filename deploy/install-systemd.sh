#!/bin/sh
# Installs Tacet as a systemd service on this host, from the repository root:
#   cargo build --release && sudo sh deploy/install-systemd.sh [path/to/tacet]
# Creates the system user `tacet`, /etc/tacet with a configuration (from deploy/tacet.example.toml) and an
# environment file for secrets (both kept if already there), installs the binary and deploy/tacet.service,
# and reloads systemd. It starts nothing: fill in the two files, then `systemctl enable --now tacet`.
#
# ROOT=/some/dir installs below that directory instead and skips the user and systemctl (for a package
# build, or the test that checks this script).
set -eu

bin=${1:-target/release/tacet}
root=${ROOT:-}
here=$(dirname "$0")

[ -x "$bin" ] || { echo "no tacet binary at $bin: run \`cargo build --release\` first, or give its path" >&2; exit 1; }

echo "binary:        $root/usr/local/bin/tacet"
install -d "$root/usr/local/bin" "$root/etc/systemd/system"
install -m 0755 "$bin" "$root/usr/local/bin/tacet"

if [ -z "$root" ] && ! id tacet >/dev/null 2>&1; then
    echo "user:          tacet (system user, no login)"
    useradd --system --home-dir /var/lib/tacet --no-create-home --shell /usr/sbin/nologin tacet
fi
group=$( [ -z "$root" ] && echo tacet || id -gn )

echo "configuration: $root/etc/tacet/tacet.toml (readable by group $group)"
install -d -m 0750 "$root/etc/tacet"
[ -z "$root" ] && chgrp tacet "$root/etc/tacet"
if [ ! -e "$root/etc/tacet/tacet.toml" ]; then
    install -m 0640 "$here/tacet.example.toml" "$root/etc/tacet/tacet.toml"
    [ -z "$root" ] && chgrp tacet "$root/etc/tacet/tacet.toml"
else
    echo "               (kept: it exists)"
fi

echo "secrets:       $root/etc/tacet/tacet.env (root only; systemd reads it for the service)"
if [ ! -e "$root/etc/tacet/tacet.env" ]; then
    (umask 077 && cat > "$root/etc/tacet/tacet.env" <<'ENV'
# Secrets for tacet.service, as NAME=value lines (mode 0600, root-owned). Make keys with
# `openssl rand -hex 16`, the master key with `openssl rand -hex 32`; tacet refuses placeholders.
# ACME_READ_KEY=
# ACME_ADMIN_KEY=
# TACET_MASTER_KEY=
# AWS_ACCESS_KEY_ID=
# AWS_SECRET_ACCESS_KEY=
ENV
    )
else
    echo "               (kept: it exists)"
fi

echo "unit:          $root/etc/systemd/system/tacet.service"
install -m 0644 "$here/tacet.service" "$root/etc/systemd/system/tacet.service"
if [ -z "$root" ]; then
    systemctl daemon-reload
fi

echo
echo "next: edit /etc/tacet/tacet.toml and /etc/tacet/tacet.env, then \`systemctl enable --now tacet\`;"
echo "      \`tacet health --config /etc/tacet/tacet.toml\` says when it is ready."
