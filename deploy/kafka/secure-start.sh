#!/usr/bin/env bash
# The compose file's Kafka in secure mode (docs/security.md, "Kafka"): the same listeners
# as 'xborder kafka up' with XBORDER_KAFKA__SECURITY_PROTOCOL=SASL_SSL. Clients speak
# SASL/SCRAM-SHA-512 over TLS on 9092; the controller listener (9093) takes mutual TLS
# with the broker's own certificate only; StandardAuthorizer denies what no ACL allows.
# The CA, the broker's certificate and the passwords come from 'xborder kafka certs' (the
# kafka-secrets service) in /etc/kafka/secrets; the broker and admin SCRAM users are
# created when the storage is formatted, the others by 'xborder kafka acls --apply'.
set -euo pipefail

secrets=/etc/kafka/secrets
data=/var/lib/kafka/data
conf=/tmp/server.properties
password() { sed -n "s/^ *\"$1\": \"\([^\"]*\)\",\{0,1\}$/\1/p" "$secrets/credentials.json"; }
broker="$(password broker)"
admin="$(password admin)"
if [ -z "$broker" ] || [ -z "$admin" ]; then
  echo "no broker/admin password in $secrets/credentials.json: run 'xborder kafka certs' first" >&2
  exit 2
fi

umask 077
cat > "$conf" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=CLIENT://:9092,CONTROLLER://:9093
advertised.listeners=CLIENT://kafka:9092
listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$broker";
ssl.keystore.type=PEM
ssl.keystore.location=$secrets/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.pem
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9._-]+),.*\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:broker
allow.everyone.if.no.acl.found=false
log.dirs=$data
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES

# what the health check's client uses (the admin principal)
cat > /tmp/admin.properties <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.pem
PROPERTIES

if [ ! -f "$data/meta.properties" ]; then
  /opt/kafka/bin/kafka-storage.sh format -c "$conf" \
    --cluster-id "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
    --add-scram "SCRAM-SHA-512=[name=broker,password=$broker]" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$admin]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
