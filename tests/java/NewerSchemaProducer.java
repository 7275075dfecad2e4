// A Java producer whose schema is newer than the deployment's: it publishes its writer
// schema on the schema topic (key: the CRC-64-AVRO fingerprint in wire order as hex, value:
// Schema.toString(), self-contained) and sends events with Avro's BinaryMessageEncoder.
//
//   java -cp ... NewerSchemaProducer.java BOOTSTRAP SCHEMA_TOPIC EVENT_TOPIC \
//       (publish|skip) SCHEMA_FILE DATUM_FILE ...
//
// Each triple sends one event: DATUM_FILE holds it in Avro's JSON encoding for
// SCHEMA_FILE; with "publish" the schema goes to SCHEMA_TOPIC first (acknowledged before
// the event is sent), with "skip" it does not. One JSON line per event on standard output.

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.HexFormat;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class NewerSchemaProducer {
    public static void main(String[] a) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", a[0]);
        props.put("acks", "all");
        try (KafkaProducer<String, byte[]> producer =
                new KafkaProducer<>(props, new StringSerializer(), new ByteArraySerializer())) {
            for (int i = 3; i + 2 < a.length; i += 3) {
                Schema schema = new Schema.Parser().parse(new File(a[i + 1]));
                String fingerprint = HexFormat.of().formatHex(ByteBuffer.allocate(8)
                        .order(ByteOrder.LITTLE_ENDIAN)
                        .putLong(SchemaNormalization.parsingFingerprint64(schema)).array());
                if (a[i].equals("publish")) {
                    producer.send(new ProducerRecord<>(a[1], fingerprint,
                            schema.toString().getBytes("UTF-8"))).get();
                }
                String datum = Files.readString(new File(a[i + 2]).toPath());
                GenericRecord event = new GenericDatumReader<GenericRecord>(schema)
                        .read(null, DecoderFactory.get().jsonDecoder(schema, datum));
                ByteBuffer encoded =
                        new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(event);
                byte[] body = new byte[encoded.remaining()];
                encoded.get(body);
                RecordMetadata sent = producer.send(new ProducerRecord<>(
                        a[2], event.get("incident_id").toString(), body)).get();
                System.out.println("{\"fingerprint\": \"" + fingerprint + "\", \"published\": "
                        + a[i].equals("publish") + ", \"offset\": " + sent.offset() + "}");
            }
        }
    }
}
