// An agency's system as it would be written in Java: Apache Avro's single-object encoding
// (BinaryMessageEncoder / BinaryMessageDecoder) and kafka-clients with its defaults. The
// tests run it in source-file mode (java -cp ... AgencyClient.java) against the real broker.
//
//   send-verdict BOOTSTRAP TOPIC SCHEMA_FILE CASE_ID AGENCY DECISION OFFICER_TOKEN KEY_ID EVENT_ID
//   read BOOTSTRAP TOPIC SCHEMA_FILE TIMEOUT_MS
//
// read prints, one JSON line each, the records of TOPIC (from the beginning) written with
// SCHEMA_FILE's schema, and skips records of other schemas (a topic may carry several).

import java.io.File;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.avro.message.MissingSchemaException;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class AgencyClient {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "send-verdict" -> sendVerdict(args);
            case "read" -> read(args);
            default -> throw new IllegalArgumentException("unknown command " + args[0]);
        }
    }

    static void sendVerdict(String[] a) throws Exception {
        Schema schema = new Schema.Parser().parse(new File(a[3]));
        GenericRecord verdict = new GenericData.Record(schema);
        verdict.put("event_id", a[9]);
        verdict.put("agency", a[5]);
        verdict.put("target_kind", new GenericData.EnumSymbol(schema.getField("target_kind").schema(), "CASE"));
        verdict.put("target_id", a[4]);
        verdict.put("decision", new GenericData.EnumSymbol(schema.getField("decision").schema(), a[6]));
        verdict.put("reason", "checked jointly from the Java client");
        verdict.put("officer_token", a[7]);
        verdict.put("officer_key_id", a[8]);
        verdict.put("decided_at", System.currentTimeMillis());
        ByteBuffer encoded = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(verdict);
        byte[] body = new byte[encoded.remaining()];
        encoded.get(body);
        Properties props = new Properties();
        props.put("bootstrap.servers", a[1]);
        try (KafkaProducer<String, byte[]> producer =
                new KafkaProducer<>(props, new StringSerializer(), new ByteArraySerializer())) {
            producer.send(new ProducerRecord<>(a[2], a[4], body)).get();
        }
    }

    static void read(String[] a) throws Exception {
        Schema schema = new Schema.Parser().parse(new File(a[3]));
        BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), schema);
        Properties props = new Properties();
        props.put("bootstrap.servers", a[1]);
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(a[2])) {
                partitions.add(new TopicPartition(info.topic(), info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long deadline = System.currentTimeMillis() + Long.parseLong(a[4]);
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    try {
                        System.out.println(decoder.decode(record.value()));
                    } catch (MissingSchemaException other) {
                        // another record type on the same topic
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                }
            }
        }
    }
}
