# A private single-node KRaft broker for tests that kill or fence their
# broker (the stack's broker is shared): own ports and data directory under
# $WORK, the stack's cached jars. Source it after common.sh, set WORK and
# HERE, then call lt_kafka_private_up: it starts the broker (kafka_start,
# again after a kill -9 of $KPID) and creates the per-run topics
# CMD_TOPIC RAW_TOPIC CKPT_TOPIC STATUS_TOPIC DLQ_TOPIC CHG_TOPIC on
# BROKER. The caller's cleanup kills $KPID.
kjava() { java -Dlog4j.configuration="file:$WORK/kafka/log4j.properties" -cp "$KAFKA_LIBS/*" "$@"; }

lt_kafka_private_up() {
  KAFKA_VERSION=$(sed -n 's/^KAFKA_VERSION=//p' "$HERE/../../deploy/local/stack")
  KAFKA_LIBS=${LATTICE_CACHE_DIR:-$HERE/../../.cache}/kafka-$KAFKA_VERSION/libs
  [ -d "$KAFKA_LIBS" ] || { echo "no Kafka jars in $KAFKA_LIBS: deploy/local/stack up installs them" >&2; exit 1; }
  KPORT=$(lt_free_port)
  CPORT=$(lt_free_port)
  while [ "$CPORT" = "$KPORT" ]; do CPORT=$(lt_free_port); done
  mkdir -p "$WORK/kafka/data"
  cat >"$WORK/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$KPORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KPORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$WORK/kafka/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=1
num.io.threads=2
EOF
  printf 'log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stdout.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n\n' \
    >"$WORK/kafka/log4j.properties"
  kjava -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC kafka.tools.StorageTool format \
    -t "$(kjava -Xmx128m -XX:+UseSerialGC kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
    -c "$WORK/kafka/server.properties" >"$WORK/kafka-format.log" 2>&1
  kafka_start() {
    setsid java -Xms128m -Xmx384m -XX:+UseSerialGC -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$WORK/kafka/log4j.properties" -Dkafka.logs.dir="$WORK/kafka" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$WORK/kafka/server.properties" </dev/null >>"$WORK/kafka.log" 2>&1 &
    KPID=$!
    local end=$((SECONDS + 180))
    until kcat -L -b "127.0.0.1:$KPORT" -m 3 2>/dev/null | grep -q 'broker 1 at'; do
      [ $SECONDS -lt $end ] && kill -0 "$KPID" 2>/dev/null || { echo "private broker did not start" >&2; tail -30 "$WORK/kafka.log" >&2; exit 1; }
      sleep 0.5
    done
  }
  kafka_start
  BROKER=127.0.0.1:$KPORT
  CMD_TOPIC=cmd.$RUN RAW_TOPIC=raw.$RUN CKPT_TOPIC=ckpt.$RUN STATUS_TOPIC=status.$RUN DLQ_TOPIC=dlq.$RUN
  CHG_TOPIC=change.$RUN
  for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC:cleanup.policy=compact" "$STATUS_TOPIC" "$DLQ_TOPIC" "$CHG_TOPIC"; do
    cfg=${t#*:}; [ "$cfg" = "$t" ] && cfg=
    kjava -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$BROKER" --create --topic "${t%%:*}" --partitions 1 --replication-factor 1 \
      ${cfg:+--config "$cfg"} >>"$WORK/topics.log" 2>&1
  done
}
