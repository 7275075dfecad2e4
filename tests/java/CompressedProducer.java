// An agency system's producer as commonly configured in Java: kafka-clients with
// compression.type set. The tests run it in source-file mode against the real broker.
//
//   CompressedProducer BOOTSTRAP FILE
//
// FILE holds one message a line: CODEC TAB TOPIC TAB KEY TAB VALUE_HEX. Each codec gets
// its own producer (compression is a producer setting), so the messages of one codec
// leave in record batches compressed with it. Prints "sent N" when all are acknowledged.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class CompressedProducer {
    public static void main(String[] args) throws Exception {
        Map<String, List<String[]>> byCodec = new LinkedHashMap<>();
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) continue;
            String[] fields = line.split("\t");
            byCodec.computeIfAbsent(fields[0], c -> new ArrayList<>()).add(fields);
        }
        int sent = 0;
        for (Map.Entry<String, List<String[]>> entry : byCodec.entrySet()) {
            Properties props = new Properties();
            props.put("bootstrap.servers", args[0]);
            props.put("compression.type", entry.getKey());
            props.put("linger.ms", "50");
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> producer =
                    new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
                for (String[] f : entry.getValue()) {
                    acks.add(producer.send(new ProducerRecord<>(
                        f[1], f[2].getBytes("UTF-8"), HexFormat.of().parseHex(f[3]))));
                }
                for (Future<RecordMetadata> ack : acks) {
                    ack.get();
                    sent++;
                }
            }
        }
        System.out.println("sent " + sent);
    }
}
