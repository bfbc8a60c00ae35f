#!/bin/sh
# An example for kiln's `command` provider (docs/operations.md, "Providers"):
# kiln calls it as `provider-example.sh list|create|drain|destroy` with one
# JSON document on stdin. This one keeps instances as kiln-worker processes
# on the controller's own host, so it works as it is (its test drives it);
# the comments marked CLOUD say what a script for a cloud does instead.
#
#   kiln clusters set NAME --provider command --provider-settings \
#     '{"command": "/usr/local/lib/kiln/provider-example.sh",
#       "root": "/var/lib/kiln-provider-example", "worker_binary": "/usr/local/bin/kiln-worker"}'
#
# The protocol, in short:
#   stdin     {"cluster": ..., "provider_settings": {...}} and, but for list,
#             "instance" and "work_dir"; create adds "worker_settings",
#             "worker_conf", "ca_pem" and "join_token".
#   stdout    list only: {"instances": [{"id": "...", "alive": true}, ...]}
#   exit      0 done; 3 no such instance (drain; destroy takes it as done);
#             anything else failed, and stderr says why (kiln shows it).
#   time      kiln kills the command after timeout_s (default 60): start a
#             machine and return, do not wait for it to boot.
# Settings of this example (provider_settings): root, where it keeps each
# instance's files (default /var/lib/kiln-provider-example); worker_binary
# (default /usr/local/bin/kiln-worker). Needs jq and setsid.
set -eu

die() { echo "provider-example: $*" >&2; exit 1; }
command -v jq >/dev/null 2>&1 || die "jq is not installed (apt-get install -y jq)"

op=${1:-}
input=$(cat)
# A field of the input; empty when it is missing.
field() { printf '%s' "$input" | jq -r "$1 // empty"; }
# Names reach paths here: only what kiln allows (CheckName) gets through.
name() {
  case $1 in
    '' | [._-]* | *[!A-Za-z0-9._-]*) die "\"$1\" is not a valid $2 name" ;;
  esac
}

cluster=$(field .cluster)
name "$cluster" cluster
root=$(field .provider_settings.root)
root=${root:-/var/lib/kiln-provider-example}/$cluster
worker=$(field .provider_settings.worker_binary)
worker=${worker:-/usr/local/bin/kiln-worker}

# The pid of instance $1's worker if it runs, else nothing. The pid file
# may name a process that is gone, or a reused pid: it is ours only if its
# command line names the instance's directory.
# CLOUD: describe the machine tagged kiln-instance=$1 and check it runs.
pid_of() {
  d=$root/$1
  [ -f "$d/pid" ] || return 0
  p=$(cat "$d/pid")
  case $p in '' | *[!0-9]*) return 0 ;; esac
  kill -0 "$p" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$d" && echo "$p"
  return 0
}

case $op in
  list)
    # CLOUD: list the machines tagged kiln-cluster=$cluster.
    printf '{"instances": ['
    sep=
    if [ -d "$root" ]; then
      for d in "$root"/*/; do
        [ -d "$d" ] || continue
        id=$(basename "$d")
        alive=false
        [ -n "$(pid_of "$id")" ] && alive=true
        printf '%s{"id": "%s", "alive": %s}' "$sep" "$id" "$alive"
        sep=', '
      done
    fi
    printf ']}\n'
    ;;

  create)
    id=$(field .instance)
    name "$id" instance
    work_dir=$(field .work_dir)
    [ -n "$work_dir" ] || die "create: no work_dir in the input"
    [ -z "$(pid_of "$id")" ] || die "instance $id runs already"
    [ -x "$worker" ] || die "worker_binary $worker is not an executable file: set provider setting worker_binary"
    d=$root/$id
    mkdir -p "$d" "$work_dir"
    # worker.conf: kiln's lines (controller, cluster, slots, labels, the
    # cluster's worker settings, work_dir), then where this machine keeps
    # the CA certificate and the join token.
    # CLOUD: put these files in the machine's user data (cloud-init
    # write_files, the token with permissions 0600) and start kiln-worker
    # there, e.g. with deploy/systemd/kiln-worker.service pointing at them.
    conf=$(field .worker_conf)
    ca=$(field .ca_pem)
    if [ -n "$ca" ]; then
      printf '%s\n' "$ca" >"$d/ca.crt"
      conf="$conf
ca_file = $d/ca.crt"
    fi
    token=$(field .join_token)
    if [ -n "$token" ]; then
      # 0600 from the start: the token admits a worker to the farm.
      (umask 077 && printf '%s\n' "$token" >"$d/join.token")
      conf="$conf
join_token_file = $d/join.token"
    fi
    printf '%s\n' "$conf" >"$d/worker.conf.tmp"
    mv "$d/worker.conf.tmp" "$d/worker.conf"
    # A session of its own: the worker outlives this script and the
    # controller, and kiln's timeout (which kills this script's process
    # group) does not reach it. Its output goes to worker.log, not to
    # kiln's pipes. The inner shell writes its own pid, then becomes the
    # worker.
    # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
    setsid sh -c 'echo $$ >"$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid" && exec "$2" --config "$1/worker.conf"' \
      sh "$d" "$worker" </dev/null >>"$d/worker.log" 2>&1 &
    # Until the pid file is there, so a list right after sees it alive.
    i=0
    while [ ! -f "$d/pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    [ -f "$d/pid" ] || die "instance $id: $worker did not start (see $d/worker.log)"
    ;;

  drain)
    id=$(field .instance)
    name "$id" instance
    p=$(pid_of "$id")
    if [ -z "$p" ]; then echo "instance $id does not run" >&2; exit 3; fi
    # SIGTERM: kiln-worker stops taking builds, finishes the running ones
    # (drain_grace) and exits. CLOUD: the same over ssh or the cloud's
    # run-command, or a shutdown that lets the unit stop (TimeoutStopSec).
    kill -TERM "$p"
    ;;

  destroy)
    id=$(field .instance)
    name "$id" instance
    d=$root/$id
    p=$(pid_of "$id")
    # CLOUD: terminate the machine; a machine that is gone already is done.
    if [ -n "$p" ]; then
      kill -KILL "$p"
      i=0
      # Gone, or a zombie nobody reaped yet (its command line is empty).
      while [ -n "$(pid_of "$id")" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    fi
    work_dir=$(field .work_dir)
    # Only a work_dir that is this instance's (kiln's <work_dir_base>/<id>).
    case $work_dir in */"$id") rm -rf "$work_dir" ;; esac
    rm -rf "$d"
    ;;

  *) die "unknown operation \"$op\": list, create, drain or destroy" ;;
esac
