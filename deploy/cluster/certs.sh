#!/usr/bin/env bash
# The cluster's CA and certificates, made with openssl at first start (kept afterwards):
#   $LOCAL_DIR/cluster/ca.crt          the CA every client trusts (KAFKA_SSL_CA_FILE, sslrootcert,
#                                      SSL_CERT_FILE for the grant API and the upload client)
#   tls/server.crt, tls/server.key     the servers' certificate (PostgreSQL, nginx, the grant
#                                      stand-in): names 127.0.0.1 and localhost
#   tls/kafka-broker.pem               a broker's PEM keystore (key + certificate chain), also its
#                                      client certificate between brokers and to the controllers:
#                                      the principal User:CN=kafka-broker is a Kafka super user
set -euo pipefail
source "$(dirname "$0")/env.sh"

DAYS=825

issue() {  # name common-name extended-key-usage
    local name=$1 cn=$2 usage=$3
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/$name.key" 2>/dev/null
    openssl req -new -key "$TLS_DIR/$name.key" -subj "/CN=$cn" -out "$TLS_DIR/$name.csr"
    cat > "$TLS_DIR/$name.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = $usage
subjectAltName = IP:127.0.0.1, DNS:localhost
EXT
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$CA_FILE" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days "$DAYS" -sha256 -extfile "$TLS_DIR/$name.ext" \
        -out "$TLS_DIR/$name.crt" 2>/dev/null
    rm -f "$TLS_DIR/$name.csr" "$TLS_DIR/$name.ext"
    chmod 600 "$TLS_DIR/$name.key"
}

make_all() {
    if [ -s "$TLS_DIR/kafka-broker.pem" ] && [ -s "$CA_FILE" ]; then return 0; fi
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    echo "making the cluster's CA and certificates in $TLS_DIR"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/ca.key" 2>/dev/null
    chmod 600 "$TLS_DIR/ca.key"
    openssl req -x509 -new -key "$TLS_DIR/ca.key" -sha256 -days "$DAYS" \
        -subj "/CN=achievements cluster CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$CA_FILE"
    issue server localhost serverAuth
    issue kafka-broker kafka-broker "serverAuth, clientAuth"
    # Kafka reads an unencrypted PKCS#8 key followed by its certificate from one PEM keystore.
    (umask 077 && cat "$TLS_DIR/kafka-broker.key" "$TLS_DIR/kafka-broker.crt" > "$TLS_DIR/kafka-broker.pem")
}

make_all
