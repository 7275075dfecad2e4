// Reads each exported .avsc with its own new Schema.Parser (so every file must be
// self-contained) and prints, one JSON line each, the schema's full name, its Parsing
// Canonical Form and its CRC-64-AVRO fingerprint in wire order (little-endian hex, as
// BinaryMessageEncoder writes it after C3 01).
//
//   java -cp ... ParseSchemas.java FILE...

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;

public class ParseSchemas {
    public static void main(String[] args) throws Exception {
        ObjectMapper json = new ObjectMapper();
        for (String path : args) {
            Schema schema = new Schema.Parser().parse(new File(path));
            byte[] fingerprint = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN)
                    .putLong(SchemaNormalization.parsingFingerprint64(schema)).array();
            Map<String, String> out = new LinkedHashMap<>();
            out.put("file", new File(path).getName());
            out.put("name", schema.getFullName());
            out.put("fingerprint", HexFormat.of().formatHex(fingerprint));
            out.put("canonical_form", SchemaNormalization.toParsingForm(schema));
            System.out.println(json.writeValueAsString(out));
        }
    }
}
