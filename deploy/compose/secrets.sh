#!/bin/sh
# Write the compose stack's secrets, one file each, into ./secrets (or $TGFLEET_SECRETS):
# fresh random values for the keys and passwords; the alerting bot token you give (or an
# empty placeholder until you have one). Existing files are kept: rerun it safely.
#
# The directory is 0700 (only you enter it); the files 0444, because each container reads
# its secret as its own user (tgfleet 10001, postgres 999, grafana 472) through a bind mount.
set -eu
dir=${TGFLEET_SECRETS:-./secrets}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

write() {  # write NAME VALUE: only when the file is missing
    if [ ! -e "$dir/$1" ]; then
        printf '%s\n' "$2" >"$dir/$1"
        echo "wrote $dir/$1"
    fi
    chmod 444 "$dir/$1"
}
random_base64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
random_text() { head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | cut -c1-40; }

write tgfleet_vault_key "$(random_base64 32)"
write tgfleet_audit_key "$(random_base64 32)"
write tgfleet_jwt_secret "$(random_text)"
write postgres_password "$(random_text)"
write grafana_admin_password "$(random_text)"
write telegram_bot_token "${TGFLEET_ALERTING_TELEGRAM_BOT_TOKEN:-}"
echo "secrets in $dir: back up tgfleet_vault_key and tgfleet_audit_key with the database"
