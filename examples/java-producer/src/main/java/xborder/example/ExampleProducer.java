// An agency's producer written in Java, as an integrator would write it: it reads the
// IncidentReported schema exported by 'xborder schemas export', builds one GenericRecord
// per event, encodes it with Apache Avro's single-object encoding (BinaryMessageEncoder:
// magic C3 01, the schema's CRC-64-AVRO fingerprint, the body) and sends it with
// kafka-clients and its defaults (acks=all, idempotence on), keyed by the incident id.
//
//   java -jar target/xborder-java-producer.jar BOOTSTRAP TOPIC SCHEMA_FILE EVENTS_FILE
//
// EVENTS_FILE holds JSON lines as 'xborder pseudonymise' writes them: the subjects are
// already tokens. Tokens must be made by the one recipe every agency shares (normalise the
// identifier, then HMAC-SHA256 with the shared key), so this example does not make them:
// it takes them from 'xborder pseudonymise' (see docs/integration.md). Replace readEvents
// with your own records; incident() shows how each field is set.
//
// Prints one line per event sent ("sent <event_id> <topic>[<partition>]@<offset>"); a line
// that cannot be built is reported on stderr with its number and the others still go.
// Exit status: 0 all sent, 1 some lines failed, 2 bad arguments.

package xborder.example;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class ExampleProducer {
    static final String RECORD = "xborder.v1.IncidentReported";
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: ExampleProducer BOOTSTRAP TOPIC SCHEMA_FILE EVENTS_FILE");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1];
        Schema schema = new Schema.Parser().parse(new File(args[2]));
        if (!schema.getFullName().equals(RECORD)) {
            System.err.println(args[2] + " holds " + schema.getFullName() + ", not " + RECORD
                    + "; export the schemas with 'xborder schemas export DIR'");
            System.exit(2);
        }
        BinaryMessageEncoder<GenericRecord> encoder =
                new BinaryMessageEncoder<>(GenericData.get(), schema);

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap); // everything else: kafka-clients defaults
        int failed = 0;
        try (KafkaProducer<String, byte[]> producer =
                new KafkaProducer<>(props, new StringSerializer(), new ByteArraySerializer())) {
            List<String> lines = Files.readAllLines(Path.of(args[3]), StandardCharsets.UTF_8);
            for (int n = 1; n <= lines.size(); n++) {
                String line = lines.get(n - 1);
                if (line.isBlank()) {
                    continue;
                }
                GenericRecord event;
                try {
                    event = incident(schema, JSON.readTree(line));
                } catch (RuntimeException | java.io.IOException e) {
                    System.err.println(args[3] + ":" + n + ": " + e.getMessage());
                    failed++;
                    continue;
                }
                ByteBuffer encoded = encoder.encode(event);
                byte[] value = new byte[encoded.remaining()];
                encoded.get(value);
                String key = event.get("incident_id").toString();
                RecordMetadata sent = producer.send(new ProducerRecord<>(topic, key, value)).get();
                System.out.println("sent " + event.get("event_id") + " " + sent.topic()
                        + "[" + sent.partition() + "]@" + sent.offset());
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }

    /** One IncidentReported record from one pseudonymised JSON event. */
    static GenericRecord incident(Schema schema, JsonNode e) {
        Schema location = schema.getField("location").schema();
        Schema subject = schema.getField("subjects").schema().getElementType();
        List<GenericRecord> subjects = new ArrayList<>();
        for (JsonNode s : e.path("subjects")) {
            subjects.add(record(subject, s)); // role, kind, token, key_id, descriptors, ...
        }
        List<String> tags = new ArrayList<>();
        e.path("modus_operandi").forEach(tag -> tags.add(tag.asText()));
        // GenericRecordBuilder fills fields left unset with their schema defaults and
        // refuses to build a record that misses a required field.
        return new GenericRecordBuilder(schema)
                .set("event_id", text(e, "event_id")) // a UUID, as text
                .set("agency", text(e, "agency"))
                .set("incident_id", text(e, "incident_id"))
                .set("occurred_at", millis(e, "occurred_at")) // timestamp-millis: epoch ms
                .set("reported_at", millis(e, "reported_at"))
                .set("location", record(location, e.path("location")))
                .set("category", symbol(schema.getField("category").schema(), text(e, "category")))
                .set("severity", symbol(schema.getField("severity").schema(), text(e, "severity")))
                .set("subjects", subjects)
                .set("modus_operandi", tags)
                .set("narrative", e.hasNonNull("narrative") ? e.get("narrative").asText() : null)
                .set("source_system", text(e, "source_system"))
                .build();
    }

    /** A record of flat fields (Location, Subject): each field the JSON has, else its
     * default; strings, numbers, enums, maps of strings and optional (null-union) fields. */
    static GenericRecord record(Schema schema, JsonNode json) {
        if (!json.isObject()) {
            throw new IllegalArgumentException(schema.getName() + ": expected a JSON object");
        }
        GenericRecordBuilder builder = new GenericRecordBuilder(schema);
        for (Schema.Field field : schema.getFields()) {
            JsonNode value = json.get(field.name());
            if (value != null) {
                builder.set(field, value(field.schema(), value, schema.getName() + "." + field.name()));
            }
        }
        return builder.build();
    }

    static Object value(Schema type, JsonNode json, String where) {
        switch (type.getType()) {
            case STRING: return json.asText();
            case DOUBLE: return json.asDouble();
            case LONG: return json.asLong();
            case INT: return json.asInt();
            case BOOLEAN: return json.asBoolean();
            case ENUM: return symbol(type, json.asText());
            case MAP: {
                Map<String, String> map = new HashMap<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = json.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> entry = it.next();
                    map.put(entry.getKey(), entry.getValue().asText());
                }
                return map;
            }
            case UNION: {
                if (json.isNull()) {
                    return null;
                }
                for (Schema branch : type.getTypes()) {
                    if (branch.getType() != Schema.Type.NULL) {
                        return value(branch, json, where);
                    }
                }
                throw new IllegalArgumentException(where + ": no non-null branch");
            }
            default: throw new IllegalArgumentException(where + ": unsupported type " + type);
        }
    }

    static GenericData.EnumSymbol symbol(Schema enumSchema, String symbol) {
        if (!enumSchema.hasEnumSymbol(symbol)) {
            throw new IllegalArgumentException(enumSchema.getName() + ": '" + symbol
                    + "' is not one of " + enumSchema.getEnumSymbols());
        }
        return new GenericData.EnumSymbol(enumSchema, symbol);
    }

    static String text(JsonNode e, String field) {
        JsonNode value = e.get(field);
        if (value == null || !value.isTextual()) {
            throw new IllegalArgumentException(field + ": missing or not text");
        }
        return value.asText();
    }

    /** An ISO-8601 timestamp with offset ("2026-03-14T21:30:00+07:00") or epoch ms. */
    static long millis(JsonNode e, String field) {
        JsonNode value = e.get(field);
        if (value != null && value.isIntegralNumber()) {
            return value.asLong();
        }
        return OffsetDateTime.parse(text(e, field)).toInstant().toEpochMilli();
    }
}
