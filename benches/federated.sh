# Sourced by benches/run.sh and benches/federation.sh: what federated
# authentication needs to be measured, on a running asapd.
#
#   federated_setup URL ADMIN_SECRET WORK
#       starts a second asapd (same binary, $BIN) over HTTPS as the trusted
#       issuer, with an RS256 caller whose ASAP token carries the claims of a
#       Kubernetes projected service-account token (2048-bit RSA, as the API
#       server signs); trusts it on URL (jwks_uri = its JWKS, its certificate
#       as ca_pem) and binds caller bench-fed (ES256, group bench, rate limit
#       out of the way) to that identity. Exports FED_AUTH ("Bearer <token>")
#       and FED_PID (stop it with federated_stop).
#   federated_stop

FED_PID=

fed_json() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

fed_call() { # URL SECRET METHOD PATH BODY
    curl -ksf -X "$3" -u "admin:$2" -H 'content-type: application/json' "$1$4" -d "$5"
}

federated_setup() {
    local url=$1 admin=$2 work=$3 port issuer_admin secret token
    mkdir -p "$work/issuer"
    # A leaf certificate (CA:FALSE) for 127.0.0.1, trusted as ca_pem.
    openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$work/issuer/key.pem" -out "$work/issuer/cert.pem" -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    issuer_admin=$(env -u ASAPD_DATABASE_URL "$BIN" init --json --data-dir "$work/issuer/data" 2>/dev/null | fed_json client_secret)
    env -u ASAPD_DATABASE_URL "$BIN" serve --data-dir "$work/issuer/data" --listen "127.0.0.1:$port" \
        --tls-cert "$work/issuer/cert.pem" --tls-key "$work/issuer/key.pem" >"$work/issuer/log" 2>&1 &
    FED_PID=$!
    local iu=https://127.0.0.1:$port
    for _ in $(seq 100); do curl -ksf "$iu/healthz" >/dev/null && break; sleep 0.1; done
    fed_call "$iu" "$issuer_admin" POST /v1/admin/groups \
        '{"name": "sa", "audiences": ["asapd-bench"], "max_lifetime": 3600, "allow_subject": true}' >/dev/null
    secret=$(fed_call "$iu" "$issuer_admin" POST /v1/admin/callers \
        '{"name": "k8s-sim", "groups": ["sa"], "algorithm": "RS256"}' | fed_json client_secret)
    token=$(curl -ksf -u "k8s-sim:$secret" -H 'content-type: application/json' "$iu/v1/tokens" -d '{
        "audience": "asapd-bench", "lifetime": 3600, "subject": "system:serviceaccount:bench:client",
        "claims": {"kubernetes.io": {"namespace": "bench",
            "pod": {"name": "client-7c9d8f6b5-x2x4q", "uid": "1f6a2f6e-8c1d-4a9e-9d8a-3c0b5e0f7a11"},
            "serviceaccount": {"name": "client", "uid": "5d3e8b1c-2f4a-4c6d-8e9f-0a1b2c3d4e5f"}}}}' \
        | fed_json token)
    local ca
    ca=$(python3 -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' "$work/issuer/cert.pem")
    fed_call "$url" "$admin" POST /v1/admin/issuers "{\"name\": \"k8s-sim\", \"issuer\": \"k8s-sim\",
        \"jwks_uri\": \"$iu/.well-known/jwks.json\", \"ca_pem\": $ca, \"audiences\": [\"asapd-bench\"]}" >/dev/null
    fed_call "$url" "$admin" POST /v1/admin/callers '{"name": "bench-fed", "groups": ["bench"],
        "algorithm": "ES256", "rate_limit": {"per_second": 1000000, "burst": 1000000},
        "federated": [{"issuer": "k8s-sim", "subject": "system:serviceaccount:bench:client"}]}' >/dev/null
    FED_AUTH="Bearer $token"
    export FED_AUTH
}

federated_stop() {
    [[ -n $FED_PID ]] && kill -TERM "$FED_PID" 2>/dev/null
    FED_PID=
}
